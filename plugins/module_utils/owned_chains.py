# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every chain backend shares (iptables/chains.py, ebtables/chains.py): the owned state of one
table, the minimal restore text that turns one owned state into another, the all-or-nothing converge
of several tables, and the read-back comparison.

A backend supplies what differs between the tools as a `Dialect`: how a rule names its target, how an
owned chain is declared in restore text, how our jumps are deleted from a built-in chain (iptables
by specification, ebtables-nft by position: it cannot delete an `--among-src` rule by specification).
Standard library only, Python 3.9: modules import this on managed hosts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import CHAIN_NAME_MAX, Chain, Table
from ansible_collections.netpol.fleet.plugins.module_utils.tools import ToolError


class ChainError(Exception):
    """A desired state we refuse, or an apply that failed (the kernel was put back as it was)."""


@dataclass(frozen=True)
class Owned:
    """One table as far as we care: our chains, and the built-in chains with all their rules (the
    foreign ones decide where our jumps sit). `Owned()` is "nothing of ours"."""

    chains: Tuple[Chain, ...] = ()  # sorted by name
    base: Tuple[Chain, ...] = ()


@dataclass(frozen=True)
class Plan:
    created: Tuple[str, ...] = ()
    updated: Tuple[str, ...] = ()
    removed: Tuple[str, ...] = ()
    jumps_added: Tuple[str, ...] = ()  # "-I INPUT 1 -j NETPOL-X"
    jumps_removed: Tuple[str, ...] = ()
    restore: str = ""  # the tool's restore --noflush input; empty when the kernel already agrees

    @property
    def changed(self) -> bool:
        return bool(self.restore)


@dataclass(frozen=True)
class Outcome:
    """What converging one (family, table) found, wants and does."""

    table: Table
    before: Owned
    after: Owned
    plan: Plan
    warnings: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Dialect:
    """The restore-text details of one tool."""

    rule_target: Callable[[str], Optional[str]]
    declare: str  # an owned chain's declaration line, "%s" for its name
    delete_jumps: Callable[["Dialect", Chain, str], List[str]]  # (dialect, built-in chain as it is, prefix)

    def owns(self, spec: str, prefix: str) -> bool:
        """A rule of a built-in chain is ours when it jumps to one of our chains."""
        target = self.rule_target(spec)
        return bool(target and target.startswith(prefix))

    def jump_lines(self, base: Chain, prefix: str) -> List[str]:
        return ["-I %s %d %s" % (base.name, i, r) for i, r in enumerate(base.rules, 1) if self.owns(r, prefix)]


def with_builtins(owned: Owned, builtin: Sequence[str]) -> Owned:
    """`owned` with every built-in chain of its table, in that order, those the save did not print
    empty (a table that does not exist yet): as `*-save -t TABLE` prints them, and as a read-back
    after the first restore into the table will."""
    present = {b.name: b for b in owned.base}
    return Owned(owned.chains, tuple(present.get(name, Chain(name)) for name in builtin))


def check_names(table: Table, prefix: str) -> None:
    """The checks every backend makes first: the prefix, and each chain's name, once."""
    if not prefix or any(ch.isspace() for ch in prefix):
        raise ChainError("prefix must be a non-empty word, got %r" % prefix)
    names = [c.name for c in table.chains]
    for name in names:
        if not name.startswith(prefix) or len(name) > CHAIN_NAME_MAX or any(ch.isspace() for ch in name):
            raise ChainError("chain %r must start with %r, contain no spaces and fit %d characters"
                             % (name, prefix, CHAIN_NAME_MAX))
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ChainError("chains declared twice: %s" % ", ".join(duplicates))


def plan(dialect: Dialect, table: str, want: Owned, have: Owned, prefix: str) -> Plan:
    """The restore text turning `have` into `want`, mentioning nothing that already agrees."""
    wanted: Dict[str, Tuple[str, ...]] = {c.name: c.rules for c in want.chains}
    present: Dict[str, Tuple[str, ...]] = {c.name: c.rules for c in have.chains}
    created = tuple(n for n in wanted if n not in present)
    updated = tuple(n for n in wanted if n in present and present[n] != wanted[n])
    removed = tuple(n for n in present if n not in wanted)
    have_base = {c.name: c.rules for c in have.base}
    # Built-in chains whose jumps are not exactly in place: (as they are, as they should be).
    moved = [(Chain(w.name, have_base.get(w.name, ())), w) for w in want.base if have_base.get(w.name, ()) != w.rules]
    jumps_before = [line for old, _new in moved for line in dialect.jump_lines(old, prefix)]
    jumps_after = [line for _old, new in moved for line in dialect.jump_lines(new, prefix)]
    if not (created or updated or removed or moved):
        return Plan()
    # Declaring a chain under --noflush creates or flushes it: all come first so that rules may refer
    # to any of them, and -X finds removed chains empty. Jumps leave before the chains they enter.
    lines = ["*%s" % table]
    lines += [dialect.declare % n for n in created + updated + removed]
    lines += [line for old, _new in moved for line in dialect.delete_jumps(dialect, old, prefix)]
    lines += ["-A %s %s" % (n, r) for n in created + updated for r in wanted[n]]
    lines += jumps_after
    lines += ["-X %s" % n for n in removed]
    lines.append("COMMIT")
    return Plan(
        created=created,
        updated=updated,
        removed=removed,
        jumps_added=tuple(j for j in jumps_after if j not in jumps_before),
        jumps_removed=tuple(j for j in jumps_before if j not in jumps_after),
        restore="\n".join(lines) + "\n",
    )


@dataclass(frozen=True)
class Backend:
    """The calls of one backend that converge drives (each backend's module-level functions)."""

    prepare: Callable[..., Outcome]  # (module, table, prefix): read and plan, touching nothing
    test: Callable[..., None]  # (module, outcome, prefix): the dry check
    apply: Callable[..., None]  # (module, outcome, prefix): one atomic restore, read back
    restore: Callable[..., None]  # (module, outcome, prefix): put outcome.before back


def converge(module, backend: Backend, tables: Sequence[Table], prefix: str, check_mode: bool = False) -> List[Outcome]:
    """Bring every table to its desired state, or leave all of them as they were."""
    outcomes = [backend.prepare(module, t, prefix) for t in tables]
    if check_mode:
        return outcomes
    changed = [o for o in outcomes if o.plan.changed]
    # The dry check catches syntax and unknown matches without touching anything: every table is
    # tested before the first one is written, so such an error leaves all of them untouched.
    for outcome in changed:
        backend.test(module, outcome, prefix)
    applied: List[Outcome] = []
    try:
        for outcome in changed:
            applied.append(outcome)
            backend.apply(module, outcome, prefix)
    except (ChainError, ToolError) as failure:
        problems = [str(failure)]
        for outcome in reversed(applied):
            try:
                backend.restore(module, outcome, prefix)
            except (ChainError, ToolError) as e:  # keep going: put back every table we can
                problems.append("restoring the previous %s %s failed too: %s" % (outcome.table.family, outcome.table.name, e))
        raise ChainError("\n".join(problems)) from failure
    return outcomes


def mismatch(want: Owned, have: Owned) -> str:
    """The rules the kernel prints otherwise than desired, chain by chain."""
    present = {c.name: c.rules for c in have.chains + have.base}
    lines = []
    for chain in want.chains + want.base:
        actual = present.get(chain.name, ())
        for desired, printed in zip(chain.rules, actual):
            if desired != printed:
                lines.append("  %s: desired %r, kernel prints %r" % (chain.name, desired, printed))
        if len(chain.rules) != len(actual):
            lines.append("  %s: %d rules desired, kernel has %d" % (chain.name, len(chain.rules), len(actual)))
    return "\n".join(lines)


def tool(module, name: str) -> str:
    """The tool's full path: a login PATH on a managed host may lack /usr/sbin."""
    find = getattr(module, "get_bin_path", None)  # tests and benchmarks pass simpler runners
    return find(name, required=True) if find else name
