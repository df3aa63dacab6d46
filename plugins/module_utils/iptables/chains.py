# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backend of netpol_chain: read the chains we own, plan the minimal restore, apply it atomically.

Ownership is read from the kernel: a chain is ours when its name carries the prefix, a rule in a
built-in chain is ours when it jumps to one of our chains. Everything else is never mentioned in
the restore text, so it stays byte-identical (counters included). Standard library only, Python 3.9.
"""

from __future__ import annotations

import re
from typing import Dict, List, Sequence, Tuple

from ansible_collections.netpol.fleet.plugins.module_utils import owned_chains
from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import Chain, Jump, Table
from ansible_collections.netpol.fleet.plugins.module_utils.iptables.text import (
    SavedChain,
    jump_spec,
    offending_line,
    parse_save,
    rule_comment,
    rule_target,
)
from ansible_collections.netpol.fleet.plugins.module_utils.owned_chains import (  # noqa: F401 (re-exported)
    ChainError,
    Dialect,
    Outcome,
    Owned,
    Plan,
    check_names,
)
from ansible_collections.netpol.fleet.plugins.module_utils.tools import ToolError, read as read_listing, run

TOOLS = {"ipv4": ("iptables-save", "iptables-restore"), "ipv6": ("ip6tables-save", "ip6tables-restore")}
BUILTIN_CHAINS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "raw": ("PREROUTING", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
}


def _delete_jumps(dialect: Dialect, base: Chain, prefix: str) -> List[str]:
    """iptables deletes our jumps by specification: foreign rules keep their positions' meaning."""
    return ["-D %s %s" % (base.name, r) for r in base.rules if dialect.owns(r, prefix)]


DIALECT = Dialect(rule_target=rule_target, declare=":%s - [0:0]", delete_jumps=_delete_jumps)


def _owns(spec: str, prefix: str) -> bool:
    return DIALECT.owns(spec, prefix)


def owned_from_save(saved: Sequence[SavedChain], prefix: str) -> Owned:
    chains = tuple(Chain(c.name, c.rules) for c in saved if c.name.startswith(prefix))
    base = tuple(Chain(c.name, c.rules) for c in saved if c.builtin)
    return Owned(tuple(sorted(chains, key=lambda c: c.name)), base)


def read(module, family: str, table: str, prefix: str) -> Owned:
    """The owned state of one table, from an iptables-save / ip6tables-save of it (which prints the
    table also when nf_tables has none yet; one without it is a listing we did not get whole)."""
    out = read_listing(module, [_tool(module, TOOLS[family][0]), "-t", table], lambda text: save_gaps(text, (table,)))[1]
    return owned_from_save(parse_save(out).get(table, ()), prefix)


def save_gaps(text: str, tables: Sequence[str] = ()) -> str:
    """What an iptables-save listing lacks ("" when nothing): one of `tables`, or the COMMIT that
    ends each table it begins (the rest of its output did not reach us)."""
    begun, seen = "", set()
    for line in text.splitlines():
        if line.startswith("*"):
            if begun:
                break
            begun = line[1:].strip()
            seen.add(begun)
        elif line.strip() == "COMMIT":
            begun = ""
    if begun:
        return "the COMMIT ending table %s" % begun
    lacking = [name for name in tables if name not in seen]
    return "table %s" % ", ".join(lacking) if lacking else ""


def _read_every_table(module, family: str) -> str:
    """iptables-save of every table: empty only when two reads in a row say so (a host with no
    table yet)."""
    return read_listing(module, [_tool(module, TOOLS[family][0])], save_gaps, may_be_empty=True)[1]


_MATCH_SET = re.compile(r"(?:^|\s)--match-set\s+(\S+)")


def owned_set_references(module, prefix: str) -> Dict[str, int]:
    """How many rules of our chains use each ipset (`-m set --match-set NAME`), over every table of
    IPv4 and IPv6: the kernel references to sets that removing our chains gives up. Read-only."""
    counts: Dict[str, int] = {}
    for family in sorted(TOOLS):
        saved = parse_save(_read_every_table(module, family))
        for chains in saved.values():
            for chain in chains:
                if chain.name.startswith(prefix):
                    for rule in chain.rules:
                        for name in _MATCH_SET.findall(rule):
                            counts[name] = counts.get(name, 0) + 1
    return counts


def validate(table: Table, prefix: str) -> None:
    """Refuse a desired table before anything touches the kernel, naming what is wrong."""
    if table.family not in TOOLS or table.name not in BUILTIN_CHAINS:
        raise ChainError("unsupported family/table %s/%s" % (table.family, table.name))
    check_names(table, prefix)
    names = [c.name for c in table.chains]
    for chain in table.chains:
        for rule in chain.rules:
            _validate_rule(chain.name, rule, names, prefix)
    for jump in table.jumps:
        _validate_jump(jump, table.name, names)


def _validate_rule(chain: str, rule: str, names: Sequence[str], prefix: str) -> None:
    if not rule.strip() or "\n" in rule or rule.lstrip().startswith(("-A ", "-I ", "-D ")):
        raise ChainError("chain %s: a rule is a spec without -A/-I/-D and on one line, got %r" % (chain, rule))
    target = rule_target(rule)
    if target and target.startswith(prefix) and target not in names:
        raise ChainError("chain %s: rule %r jumps to %s, which is not declared" % (chain, rule, target))


def _validate_jump(jump: Jump, table: str, names: Sequence[str]) -> None:
    if jump.chain not in BUILTIN_CHAINS[table]:
        raise ChainError(
            "jump to %s: %r is not a built-in chain of table %s (%s)"
            % (jump.target, jump.chain, table, ", ".join(BUILTIN_CHAINS[table]))
        )
    if jump.target not in names:
        raise ChainError("jump from %s to %s, which is not declared" % (jump.chain, jump.target))
    if jump.position < 1:
        raise ChainError("jump from %s to %s: position starts at 1" % (jump.chain, jump.target))


def expected(table: Table, have: Owned, prefix: str) -> Owned:
    """The owned state once `table` is applied: its chains, our jumps placed among the foreign rules."""
    chains = tuple(sorted(table.chains, key=lambda c: c.name))
    present = {b.name: b.rules for b in have.base}
    # A built-in chain iptables-save did not print (a table not yet used) still gets its jumps.
    names = [b.name for b in have.base] + sorted({j.chain for j in table.jumps} - set(present))
    base = tuple(
        Chain(name, _place_jumps(present.get(name, ()), [j for j in table.jumps if j.chain == name], prefix))
        for name in names
    )
    return Owned(chains, base)


def _place_jumps(rules: Sequence[str], jumps: Sequence[Jump], prefix: str) -> Tuple[str, ...]:
    """The built-in chain with our jumps in place: where they are when they are all there, in
    order (a foreign rule inserted above them since is not fought over), else at their positions."""
    fresh = _inserted(rules, jumps, prefix)
    if not any(j.enforce_position for j in jumps) and _ours(rules, prefix) == _ours(fresh, prefix):
        return tuple(rules)
    return fresh


def _inserted(rules: Sequence[str], jumps: Sequence[Jump], prefix: str) -> Tuple[str, ...]:
    placed = [r for r in rules if not _owns(r, prefix)]
    for jump in sorted(jumps, key=lambda j: j.position):
        # A position beyond the end means "last": iptables refuses to insert past it.
        placed.insert(min(jump.position, len(placed) + 1) - 1, jump_spec(jump))
    return tuple(placed)


def _ours(rules: Sequence[str], prefix: str) -> List[str]:
    return [r for r in rules if _owns(r, prefix)]


def displaced_jumps(table: Table, after: Owned, prefix: str) -> List[str]:
    """A warning for each of our jumps that foreign rules sit above, beyond its position."""
    jumps = {jump_spec(j): j for j in table.jumps}
    warnings = []
    for base in after.base:
        foreign = 0
        for index, rule in enumerate(base.rules, 1):
            if not _owns(rule, prefix):
                foreign += 1
                continue
            jump = jumps.get(rule)
            if jump is not None and foreign >= jump.position:
                warnings.append(
                    "%s %s %s: %d foreign rule(s) above our jump %r (position %d wanted, it is at %d) decide "
                    "first; it is left where it is rather than moved back on every run (enforce_position "
                    "moves it back)" % (table.family, table.name, base.name, foreign, rule, jump.position, index))
    return warnings


def _jump_lines(base: Chain, prefix: str) -> List[str]:
    return DIALECT.jump_lines(base, prefix)


def plan(table: str, want: Owned, have: Owned, prefix: str) -> Plan:
    """The restore text turning `have` into `want`, mentioning nothing that already agrees."""
    return owned_chains.plan(DIALECT, table, want, have, prefix)


def owned_text(owned: Owned, prefix: str) -> str:
    """Our chains and jumps as readable save-like lines, for --diff."""
    lines: List[str] = []
    for chain in owned.chains:
        # A hashed name says nothing; its first rule's comment says what it stands for.
        label = rule_comment(chain.rules[0]) if chain.rules else ""
        lines.append(":%s%s" % (chain.name, "  # " + label if label else ""))
        lines += ["-A %s %s" % (chain.name, r) for r in chain.rules]
    for base in owned.base:
        lines += _jump_lines(base, prefix)
    return "\n".join(lines) + "\n" if lines else ""


def prepare(module, table: Table, prefix: str) -> Outcome:
    """Read the kernel once and decide; touches nothing (a refused table is not even read)."""
    validate(table, prefix)
    return prepare_from(table, read(module, table.family, table.name, prefix), prefix)


def converge(module, tables: Sequence[Table], prefix: str, check_mode: bool = False) -> List[Outcome]:
    """Bring every (family, table) to its desired state, or leave all of them as they were."""
    return owned_chains.converge(module, BACKEND, tables, prefix, check_mode)


def _apply(module, outcome: Outcome, prefix: str) -> None:
    family, text = outcome.table.family, outcome.plan.restore
    _restore(module, family, text)  # one transaction: a failure leaves this table as it was
    now = read(module, family, outcome.table.name, prefix)
    if _owned_view(now, prefix) != _owned_view(outcome.after, prefix):
        raise ChainError(
            "%s %s: the kernel prints the applied rules differently from the desired text, so every "
            "run would report a change; write them in iptables-save form:\n%s"
            % (family, outcome.table.name, _mismatch(outcome.after, now))
        )


def _owned_view(owned: Owned, prefix: str) -> Tuple[Tuple[Chain, ...], Tuple[Tuple[str, str], ...]]:
    """What the read-back compares: our chains, and our jumps in order per base chain. Foreign rules
    are left out: someone may add one while we apply, and that is not ours to refuse."""
    jumps = tuple((base.name, rule) for base in owned.base for rule in base.rules if _owns(rule, prefix))
    return owned.chains, jumps


def _restore_before(module, outcome: Outcome, prefix: str) -> None:
    now = read(module, outcome.table.family, outcome.table.name, prefix)
    back = plan(outcome.table.name, outcome.before, now, prefix)
    if back.changed:
        _restore(module, outcome.table.family, back.restore)


_tool = owned_chains.tool


def _restore(module, family: str, text: str, test: bool = False) -> None:
    argv = [_tool(module, TOOLS[family][1]), "--noflush", "--wait"] + (["--test"] if test else [])
    try:
        run(module, argv, text)
    except ToolError as e:
        line = offending_line(e.stderr, text)
        raise ChainError("%s%s" % (e, "\noffending line: %s" % line if line else ""))


_mismatch = owned_chains.mismatch


# ---------------------------------------------------------------- the surface a transaction drives
# netpol_host drives every backend through the same few calls: read the owned state, prepare (validate
# and plan against what is there, touching nothing), test, apply, and restore what was.


def read_all(module, family: str, prefix: str) -> Dict[str, Owned]:
    """The owned state of every table this backend manages, from one iptables-save of all tables.
    A table that does not exist yet has its built-in chains, empty, as `iptables-save -t` prints them."""
    saved = parse_save(_read_every_table(module, family))
    return {name: owned_chains.with_builtins(owned_from_save(saved.get(name, ()), prefix), BUILTIN_CHAINS[name])
            for name in BUILTIN_CHAINS}


def prepare_from(table: Table, have: Owned, prefix: str) -> Outcome:
    """prepare() for a table whose owned state was already read (read_all)."""
    validate(table, prefix)
    want = expected(table, have, prefix)
    warnings = tuple(displaced_jumps(table, want, prefix))
    return Outcome(table, have, want, plan(table.name, want, have, prefix), warnings)


def test(module, outcome: Outcome, prefix: str = "") -> None:
    """`iptables-restore --test` of the outcome's restore text: nothing is written."""
    if outcome.plan.changed:
        _restore(module, outcome.table.family, outcome.plan.restore, test=True)


def apply(module, outcome: Outcome, prefix: str) -> None:
    """Write the outcome in one restore and check the kernel prints it back as desired."""
    if outcome.plan.changed:
        _apply(module, outcome, prefix)


def restore(module, outcome: Outcome, prefix: str) -> None:
    """Put the owned state of the outcome's table back as it was read before (foreign rules untouched)."""
    _restore_before(module, outcome, prefix)


BACKEND = owned_chains.Backend(prepare=prepare, test=test, apply=apply, restore=restore)
