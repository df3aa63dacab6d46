# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The steps of one host's transaction, each wrapping one kernel backend behind the same four calls.

A step is planned before anything is written (its constructor reads nothing and decides everything
from the state the transaction read); then `test()` checks it without writing, `apply()` writes it,
and `undo()` puts back what the step found, reading the kernel again so that it also repairs a step
that failed half way. Standard library only, Python 3.9: netpol_host imports this on managed hosts.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence, Tuple

from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import Table
from ansible_collections.netpol.fleet.plugins.module_utils.ipset import sets as ipsets
from ansible_collections.netpol.fleet.plugins.module_utils.ipset.text import SavedSet, render_saved
from ansible_collections.netpol.fleet.plugins.module_utils.nftables import tables as nft_tables


class TableStep:
    """One (family, table) of a chain backend: module_utils/iptables/chains.py, or any backend with
    the same surface (prepare_from, test, apply, restore, owned_text)."""

    def __init__(self, module, backend, outcome, prefix: str):
        self.module, self.backend, self.outcome, self.prefix = module, backend, outcome, prefix
        self.label = "%s %s" % (outcome.table.family, outcome.table.name)

    @property
    def changed(self) -> bool:
        return self.outcome.plan.changed

    def test(self) -> None:
        self.backend.test(self.module, self.outcome, self.prefix)

    def apply(self) -> None:
        self.backend.apply(self.module, self.outcome, self.prefix)

    def undo(self) -> None:
        self.backend.restore(self.module, self.outcome, self.prefix)

    def commands(self) -> str:
        return self.outcome.plan.restore

    def report(self) -> Dict[str, List[str]]:
        plan = self.outcome.plan
        return dict(created=list(plan.created), updated=list(plan.updated), removed=list(plan.removed),
                    jumps_added=list(plan.jumps_added), jumps_removed=list(plan.jumps_removed))

    def diff(self) -> List[Dict[str, str]]:
        """One entry per chain that changes, and one for the jumps when they move."""
        before = {c.name: c.rules for c in self.outcome.before.chains}
        after = {c.name: c.rules for c in self.outcome.after.chains}
        plan = self.outcome.plan
        entries = [_entry("%s chain %s" % (self.label, name), _chain_text(name, before.get(name)),
                          _chain_text(name, after.get(name)))
                   for name in sorted(plan.created + plan.updated + plan.removed)]
        if plan.jumps_added or plan.jumps_removed:
            entries.append(_entry("%s jumps" % self.label, _jumps_text(self.outcome.before, self.prefix, self.backend),
                                  _jumps_text(self.outcome.after, self.prefix, self.backend)))
        return entries


def _chain_text(name: str, rules) -> str:
    if rules is None:
        return ""
    return "".join(["-N %s\n" % name] + ["-A %s %s\n" % (name, rule) for rule in rules])


def _jumps_text(owned, prefix: str, backend) -> str:
    """The jump lines of owned_text(): every line that is not a chain of ours."""
    return backend.owned_text(type(owned)(base=owned.base), prefix)


def _entry(header: str, before: str, after: str) -> Dict[str, str]:
    return dict(before_header=header, after_header=header, before=before, after=after)


class _SetPlanStep:
    """What both set steps do with their ipset plan: report it, apply it, and put sets back."""

    module: Any
    ipset_bin: str
    plan: Any

    @property
    def changed(self) -> bool:
        return self.plan.changed

    def apply(self) -> None:
        ipsets.apply(self.module, self.ipset_bin, self.plan)

    def commands(self) -> List[str]:
        return list(self.plan.script)

    def changes(self) -> Dict[str, Any]:
        return {c.name: c.to_dict() for c in self.plan.changes}

    def _apply_back(self, back) -> None:
        if back.changed:
            ipsets.apply(self.module, self.ipset_bin, back)


class SetFillStep(_SetPlanStep):
    """New and changed sets, built complete before they are swapped in (ipset/sets.py plan)."""

    def __init__(self, module, ipset_bin: str, desired: Sequence[SavedSet], actual: Mapping[str, SavedSet],
                 references: Mapping[str, int], label: str = "sets"):
        self.module, self.ipset_bin, self.desired, self.actual = module, ipset_bin, desired, actual
        self.label = label
        self.plan = ipsets.plan(desired, actual, references)
        wanted = {s.name for s in desired}
        self.touched = [c.name for c in self.plan.changes if c.name in wanted]

    def test(self) -> None:
        """Sets have no --test: their dry check is the plan (names, types, entries, references)."""

    def undo(self) -> None:
        """Changed sets get their old members back through a swap; sets this run created go again."""
        now, references = ipsets.read_state(self.module, self.ipset_bin, self.touched)
        previous = [self.actual[n] for n in self.touched if n in self.actual]
        created = [n for n in self.touched if n not in self.actual and n in now]
        self._apply_back(ipsets.plan(previous, now, references, absent=created))

    def diff(self) -> List[Dict[str, str]]:
        wanted = {s.name: s for s in self.desired}
        return [_entry("set %s" % name, _set_text(self.actual.get(name)), _set_text(wanted.get(name)))
                for name in sorted(self.touched)]


class SetPurgeStep(_SetPlanStep):
    """Our sets that nothing wants any more, destroyed once no chain of ours uses them."""

    label = "stale sets"

    def __init__(self, module, ipset_bin: str, wanted: Sequence[str], actual: Mapping[str, SavedSet],
                 foreign_references: Mapping[str, int], prefixes: Tuple[str, ...]):
        self.module, self.ipset_bin = module, ipset_bin
        self.actual = {n: s for n, s in actual.items() if n not in set(wanted)}
        # Planned against the references left once our chains no longer use the sets: what only
        # foreign rules (or list:set sets) still reference is kept, with a warning.
        self.plan = ipsets.plan([], self.actual, foreign_references, purge_prefix=prefixes, keep=wanted)
        self.destroyed = [c.name for c in self.plan.changes if c.destroyed]

    def test(self) -> None:
        """Nothing to test: destroying an unreferenced set cannot be refused."""

    def undo(self) -> None:
        """Destroyed sets come back with the members they had (a failed destroy leaves others done)."""
        now, references = ipsets.read_state(self.module, self.ipset_bin, self.destroyed)
        self._apply_back(ipsets.plan([self.actual[n] for n in self.destroyed if n not in now], now, references))

    def diff(self) -> List[Dict[str, str]]:
        return [_entry("set %s" % name, _set_text(self.actual[name]), "") for name in sorted(self.destroyed)]


def _set_text(saved) -> str:
    return render_saved([saved]) if saved is not None else ""


class EmptyTablesStep:
    """The tables our chains leave empty, deleted last (iptables-nft and ebtables-nft create a table on
    the first restore that names it and never delete it). A table is deleted only when, read again
    just before, it holds nothing but what our chains leave: no foreign rule, chain or set
    (nftables/tables.py left_empty). All deletes run as one `nft -f`, one nf_tables transaction, so a
    failure deletes none and there is nothing of this step to undo."""

    label = "empty tables"

    def __init__(self, module, emptied: Sequence[Table], prefix: str):
        self.module, self.prefix = module, prefix
        self.nft = module.get_bin_path("nft") if emptied else None
        self.warnings: List[str] = []
        if emptied and self.nft is None:
            self.warnings.append("nft is missing (package nftables): the empty tables %s stay behind"
                                 % ", ".join("%s %s" % (t.family, t.name) for t in emptied))
        self.tables = [t for t in emptied if self.nft and self._empty_once_ours_go(t)]

    def _empty_once_ours_go(self, table: Table) -> bool:
        objects = nft_tables.read_table(self.module, self.nft, table.family, table.name)
        return objects is not None and nft_tables.left_empty(objects, self.prefix)

    @property
    def names(self) -> List[str]:
        return ["%s %s" % (t.family, t.name) for t in self.tables]

    @property
    def changed(self) -> bool:
        return bool(self.tables)

    def test(self) -> None:
        """Nothing to test: the tables are read again just before they are deleted."""

    def apply(self) -> None:
        script = "".join(nft_tables.delete_script(t.family, t.name) for t in self.tables
                         if self._empty_once_ours_go(t))
        if script:
            nft_tables.delete(self.module, self.nft, script)

    def undo(self) -> None:
        """One nft transaction deleted all or none; a later step's failure cannot follow (this is last)."""

    def commands(self) -> str:
        return "".join(nft_tables.delete_script(t.family, t.name) for t in self.tables)

    def diff(self) -> List[Dict[str, str]]:
        return [dict(before_header="%s %s (table)" % (t.family, t.name), after_header="(deleted)",
                     before="table %s %s\n" % (nft_tables.NFT_FAMILIES[t.family], t.name), after="")
                for t in self.tables]
