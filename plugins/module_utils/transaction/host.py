# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One host's whole owned state as one transaction: sets, and every table of every chain backend.

    prepare()  reads everything once (ipset list -t / ipset save, one *-save per family), validates
               everything and plans every step; nothing is written. A no-op ends here.
    test()     runs every dry check (iptables-restore --test of every family, ...) before any write.
    run()      applies in the order that never opens a window - new and changed sets, then the chains
               and jumps of every family, then the stale sets - and on any failure undoes the steps
               already taken, last first, so the host ends wholly on its previous state.

Chain backends are looked up by the table's family in CHAIN_BACKENDS, in apply order: the layer-3
tables (iptables, ip6tables), then the bridge tables (ebtables: the anti-spoofing of VM ports). A
backend is a module with the surface of module_utils/iptables/chains.py (read_all, prepare_from, test,
apply, restore, owned_text). A family without a backend stops the run before anything is read
(docs/module_netpol_host.md). The bridge family is read on every host that has ebtables-save, so a
VM that left a hypervisor leaves no anti-spoofing chain behind; without the tool nothing of it can be
ours (we only write with ebtables-restore), unless the desired state has bridge tables: then the tool
is required.
Standard library only, Python 3.9: the netpol_host module imports this on managed hosts.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.netpol.fleet.plugins.module_utils.bridge.netfilter import BridgeError, read_record
from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import HostState, Jump, Table
from ansible_collections.netpol.fleet.plugins.module_utils.ebtables import chains as ebtables_chains
from ansible_collections.netpol.fleet.plugins.module_utils.iptables import chains as iptables_chains
from ansible_collections.netpol.fleet.plugins.module_utils.ipset import sets as ipsets
from ansible_collections.netpol.fleet.plugins.module_utils.ipset.sets import PlanError
from ansible_collections.netpol.fleet.plugins.module_utils.ipset.text import SavedSet, render_saved
from ansible_collections.netpol.fleet.plugins.module_utils.owned_chains import ChainError
from ansible_collections.netpol.fleet.plugins.module_utils.tools import ToolError
from ansible_collections.netpol.fleet.plugins.module_utils.transaction.bridge_flags import BridgeFlagsStep
from ansible_collections.netpol.fleet.plugins.module_utils.transaction.steps import (
    EmptyTablesStep,
    SetFillStep,
    SetPurgeStep,
    TableStep,
)

# family -> chain backend, in apply order: layer 3 first, then layer 2.
CHAIN_BACKENDS = {"ipv4": iptables_chains, "ipv6": iptables_chains, "bridge": ebtables_chains}
ALWAYS_READ = ("ipv4", "ipv6")
OPTIONAL_TOOLS = {"bridge": ebtables_chains.SAVE}  # read when the host has the tool (or the family is desired)
FAILURES = (ChainError, PlanError, ToolError, BridgeError)
_SET_REFERENCE = re.compile(r"--(?:match|add|del)-set\s+(\S+)")


class TransactionError(Exception):
    """Refused before any write, or failed and undone (the message says which, and what failed)."""


class Transaction:
    """`prelude`: steps no packet can see (new sets, which no rule references yet), taken before the
    dry checks because those need them (iptables-restore --test refuses a rule using a missing set).
    `steps`: everything else, in apply order (changed sets, the tables of every family, stale sets)."""

    def __init__(self, prelude: Sequence[Any], steps: Sequence[Any], warnings: Sequence[str] = ()):
        self.prelude, self.steps = list(prelude), list(steps)
        self.warnings = list(warnings)

    @property
    def all_steps(self) -> List[Any]:
        return self.prelude + self.steps

    @property
    def changed(self) -> bool:
        return any(step.changed for step in self.all_steps)

    def run(self) -> None:
        """Prelude, every dry check, then every step; on any failure undo what was taken, last first."""
        applied: List[Any] = []
        try:
            self._apply(self.prelude, applied)
            self._test()
            self._apply(self.steps, applied)
        except TransactionError as refused:
            raise TransactionError("\n".join([str(refused)] + _undo(applied, "nothing that traffic sees was changed")))
        except FAILURES as failure:
            raise TransactionError("\n".join(["%s: %s" % (applied[-1].label, failure)] + _undo(applied)))
        except BaseException as crash:  # anything else half way (a bug, a fail_json's SystemExit) undoes too
            where = applied[-1].label if applied else "before the first step"
            raise TransactionError("\n".join(["%s: unexpected %s: %s" % (where, type(crash).__name__, crash)]
                                             + _undo(applied))) from crash

    @staticmethod
    def _apply(steps: Sequence[Any], applied: List[Any]) -> None:
        for step in steps:
            if step.changed:
                applied.append(step)  # the failing step too: its undo repairs a partial write
                step.apply()

    def _test(self) -> None:
        for step in self.steps:
            if step.changed:
                try:
                    step.test()
                except FAILURES as e:
                    raise TransactionError("refused before any visible change: %s: %s" % (step.label, e))

    def report(self) -> Dict[str, Any]:
        sets = [s for s in self.all_steps if isinstance(s, (SetFillStep, SetPurgeStep))]
        tables = [s for s in self.all_steps if isinstance(s, TableStep)]
        changes: Dict[str, Any] = {}
        for step in sets:
            changes.update(step.changes())
        purge = [s for s in sets if isinstance(s, SetPurgeStep)]
        flags = [s.report() for s in self.all_steps if isinstance(s, BridgeFlagsStep)]
        return dict(
            changed=self.changed,
            sets=changes,
            kept_referenced=[n for s in purge for n in s.plan.kept_referenced],
            tables={t.label: t.report() for t in tables if t.changed},
            tables_deleted=[name for s in self.all_steps if isinstance(s, EmptyTablesStep) for name in s.names],
            bridge_flags=flags[0] if flags else {},
        )

    def commands(self) -> Dict[str, Any]:
        return {step.label: step.commands() for step in self.all_steps if step.changed}

    def diff(self) -> List[Dict[str, str]]:
        return [entry for step in self.all_steps if step.changed for entry in step.diff()]


def _undo(applied: Sequence[Any], done: str = "every step taken was undone: the host is on its previous state") -> List[str]:
    """Undo the steps taken, last first, and keep going: put back every one we can."""
    problems: List[str] = []
    for step in reversed(applied):
        try:
            step.undo()
        except FAILURES as e:
            problems.append("putting back the previous %s failed too: %s" % (step.label, e))
    if not problems:
        problems.append(done if applied else "nothing was changed")
    return problems


# ---------------------------------------------------------------- read and plan (no writes)


class Desired:
    """What the host must own: its sets (validated, as ipset save prints them) and its tables; bridges:
    those whose br_netfilter flags must be on (bridge mode), None to leave every flag alone."""

    def __init__(self, sets: Sequence[SavedSet], tables: Sequence[Table], bridges: Optional[Sequence[str]] = None):
        self.sets, self.tables = list(sets), list(tables)
        self.bridges = None if bridges is None else list(bridges)


def check_families(tables: Iterable[Table]) -> None:
    for table in tables:
        if table.family not in CHAIN_BACKENDS:
            raise TransactionError(
                "table %s/%s: family %r has no backend in this release (known: %s); nothing was changed"
                % (table.family, table.name, table.family, ", ".join(CHAIN_BACKENDS)))


def families_to_read(module, desired: Iterable[str]) -> List[str]:
    """Every family of the desired state, IPv4 and IPv6, and each optional family the host has the tool of."""
    wanted = set(desired) | set(ALWAYS_READ)
    wanted |= {f for f, tool in OPTIONAL_TOOLS.items() if f not in wanted and _has_tool(module, tool)}
    return sorted(wanted, key=_family_order)


def _has_tool(module, name: str) -> bool:
    find = getattr(module, "get_bin_path", None)  # unit tests pass simpler runners
    return bool(find(name)) if find else False


def read_owned(module, prefix: str, families: Iterable[str]) -> Dict[Tuple[str, str], Any]:
    """(family, table) -> owned state, one read per family."""
    owned = {}
    for family in families:
        for name, have in CHAIN_BACKENDS[family].read_all(module, family, prefix).items():
            owned[(family, name)] = have
    return owned


def prepare(module, ipset_bin: str, desired: Desired, prefix: str, set_prefixes: Tuple[str, ...],
            delete_empty_tables: bool = False) -> Transaction:
    """Read the kernel once and plan every step; raises TransactionError on anything refused.
    delete_empty_tables: a table we own something in, which the desired state leaves empty and which
    then holds nothing at all, is deleted last (iptables-nft and ebtables-nft never delete a table)."""
    check_families(desired.tables)
    try:
        return _prepare(module, ipset_bin, desired, prefix, set_prefixes, delete_empty_tables)
    except FAILURES as e:
        raise TransactionError("nothing was changed: %s" % e)


def _prepare(module, ipset_bin, desired: Desired, prefix, set_prefixes, delete_empty_tables=False) -> Transaction:
    names = [s.name for s in desired.sets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PlanError("sets given more than once: %s" % ", ".join(duplicates))
    owned = read_owned(module, prefix, families_to_read(module, (t.family for t in desired.tables)))
    actual, references = ipsets.read_state(module, ipset_bin, names, set_prefixes)
    _check_set_references(desired, names, references, set_prefixes)
    given = {(t.family, t.name): t for t in desired.tables}
    # Every table the host owns something in is planned: one the desired state leaves out is emptied.
    tables = [given.get(key) or Table(family=key[0], name=key[1]) for key in sorted(set(given) | set(owned),
              key=lambda k: (_family_order(k[0]), k[1]))]
    table_steps = [TableStep(module, CHAIN_BACKENDS[t.family],
                             CHAIN_BACKENDS[t.family].prepare_from(t, owned.get((t.family, t.name)) or
                                                                   _nothing(t.family), prefix), prefix)
                   for t in tables]
    new = SetFillStep(module, ipset_bin, [s for s in desired.sets if s.name not in actual], actual, references,
                      "new sets")
    changed = SetFillStep(module, ipset_bin, [s for s in desired.sets if s.name in actual], actual, references,
                          "changed sets")
    ours = _references_by(o for (_f, _t), o in owned.items())
    foreign = {n: max(0, count - ours.get(n, 0)) for n, count in references.items()}
    purge = SetPurgeStep(module, ipset_bin, names, actual, foreign, set_prefixes)
    warnings = ["set %s is ours but still referenced by rules or sets that are not; it was kept" % n
                for n in purge.plan.kept_referenced]
    # The flags after the chains that judge the bridged packets, before the purge: undone with the tables.
    flags = [] if desired.bridges is None else [BridgeFlagsStep(module, ipset_bin, desired.bridges)]
    steps = [changed] + table_steps + flags + [purge]
    if delete_empty_tables:
        emptied = [step.outcome.table for step in table_steps if _emptied(step.outcome)]
        empty = EmptyTablesStep(module, emptied, prefix)
        warnings += empty.warnings
        steps.append(empty)
    return Transaction([new], steps, warnings)


def _emptied(outcome) -> bool:
    """The table held chains of ours (a jump of ours always enters one) and keeps none."""
    return bool(outcome.before.chains) and not outcome.after.chains


def _family_order(family: str) -> int:
    order = list(CHAIN_BACKENDS)
    return order.index(family) if family in order else len(order)


def _nothing(family: str):
    """The owned state of a table the backend does not read (it refuses the table in prepare_from)."""
    return CHAIN_BACKENDS[family].Owned()


def _references_by(owned_states: Iterable[Any]) -> Dict[str, int]:
    """How often the rules of our own chains reference each set (the kernel counts them too)."""
    counts: Dict[str, int] = {}
    for owned in owned_states:
        for chain in owned.chains:
            for rule in chain.rules:
                for name in _SET_REFERENCE.findall(rule):
                    counts[name] = counts.get(name, 0) + 1
    return counts


def _check_set_references(desired: Desired, names: Sequence[str], existing: Mapping[str, int],
                          prefixes: Tuple[str, ...]) -> None:
    """A desired rule may only use a set of ours that is desired too, or a foreign set that exists:
    otherwise the restore would fail half way, or the purge would destroy what the rule needs."""
    wanted = set(names)
    for table in desired.tables:
        for chain in table.chains:
            for rule in chain.rules:
                for name in _SET_REFERENCE.findall(rule):
                    ours = name.startswith(prefixes)
                    if (ours and name not in wanted) or (not ours and name not in existing):
                        raise PlanError("%s %s chain %s: rule %r uses set %s, which %s" % (
                            table.family, table.name, chain.name, rule, name,
                            "is not among the desired sets" if ours else "does not exist on this host"))


# ---------------------------------------------------------------- the owned state as a snapshot


def snapshot(module, ipset_bin: str, prefix: str, set_prefixes: Tuple[str, ...]) -> Dict[str, Any]:
    """Everything the collection owns on this host, as plain data prepare() can take back (the
    rollback's 'before'): every owned chain, every jump at its position, every owned set."""
    owned = read_owned(module, prefix, families_to_read(module, ()))
    actual, _references = ipsets.read_state(module, ipset_bin, (), set_prefixes)
    tables = [_as_table(family, name, have, prefix) for (family, name), have in sorted(owned.items())]
    return {"tables": [HostState(host="", tables=(t,)).to_dict()["tables"][0] for t in tables if t.chains],
            "sets": render_saved(actual[n] for n in sorted(actual)),
            "bridges": sorted(read_record(module, ipset_bin))}  # whose flags we had switched on


def _as_table(family: str, name: str, have, prefix: str) -> Table:
    jumps = []
    for base in have.base:
        for position, rule in enumerate(base.rules, 1):
            found = re.match(r"^(.*?)\s*-j\s+(\S+)$", rule)
            if found and found.group(2).startswith(prefix):
                jumps.append(Jump(chain=base.name, target=found.group(2), match=found.group(1), position=position))
    return Table(family=family, name=name, chains=tuple(have.chains), jumps=tuple(jumps))


def desired_from_snapshot(data: Mapping[str, Any]) -> Desired:
    state = HostState.from_dict({"host": "", "tables": data.get("tables", [])})
    return Desired(ipsets.sets_from_text(data.get("sets", "")), state.tables, data.get("bridges"))


def dump(data: Mapping[str, Any]) -> str:
    return json.dumps(data, sort_keys=True)
