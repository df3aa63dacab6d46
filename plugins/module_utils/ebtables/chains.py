# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backend of the ebtables module: read the bridge chains we own, plan the minimal restore, prove it
in a scratch network namespace, apply it atomically, put the previous state back on failure.

The same surface as iptables/chains.py (read, read_all, validate, expected, plan, prepare,
prepare_from, converge, test, apply, restore, owned_text), for tables `Table(family="bridge",
name="filter"|"nat")`; what both share (Owned, Plan, Outcome, the restore plan, converge) is in
module_utils/owned_chains.py.

ebtables-nft specifics this backend is built around (measured with ebtables 1.8.9, nf_tables):
- A restore is one nf_tables transaction: a failing line leaves the table as it was. There is no
  `--test` and no lock (`--concurrent` is refused by ebtables-restore and ebtables-save; the nft
  transaction is bound to the ruleset generation it was computed from). So the desired text is
  validated by restoring it into a scratch network namespace (`unshare --net`) and reading it back:
  a rule ebtables rejects, or prints in another form than we wrote, stops the run before the real
  table is touched.
- Jumps in built-in chains are deleted by position, never by specification: ebtables-nft cannot
  delete an `--among-src` rule by specification. Foreign rules are never mentioned, never the whole
  table is restored (the bridge CNI keeps its own rules in nat PREROUTING).
- `-X` refuses a chain that still has rules, so a removed chain is flushed (declared) first.
Standard library only, Python 3.9.
"""

from __future__ import annotations

import shlex
from typing import Dict, List, Sequence, Tuple

from ansible_collections.netpol.fleet.plugins.module_utils import owned_chains
from ansible_collections.netpol.fleet.plugins.module_utils.ebtables.canonical import RuleSyntaxError, canonical
from ansible_collections.netpol.fleet.plugins.module_utils.ebtables.text import (
    BUILTIN_CHAINS,
    STANDARD_TARGETS,
    USER_CHAIN_POLICY,
    Saved,
    jump_spec,
    parse_save,
    rule_target,
)
from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import CHAIN_PREFIX, Chain, Jump, Table
from ansible_collections.netpol.fleet.plugins.module_utils.iptables.text import offending_line
from ansible_collections.netpol.fleet.plugins.module_utils.owned_chains import (  # noqa: F401 (re-exported)
    ChainError,
    Dialect,
    Outcome,
    Owned,
    Plan,
    check_names,
)
from ansible_collections.netpol.fleet.plugins.module_utils.tools import ToolError, read as read_listing, run

FAMILY = "bridge"
SAVE, RESTORE = "ebtables-save", "ebtables-restore"
# Targets of ebtables extensions (lowercase, as ebtables names them); anything else that is not a
# verdict or one of our chains would be a foreign chain, which our chains never enter.
EXTENSION_TARGETS = ("dnat", "snat", "redirect", "mark", "arpreply")
NFLOG_PREFIX_MAX = 64


def _delete_jumps(dialect: Dialect, base: Chain, prefix: str) -> List[str]:
    """Our jumps deleted by position, last first so each position still holds when its line runs."""
    positions = [i for i, r in enumerate(base.rules, 1) if dialect.owns(r, prefix)]
    return ["-D %s %d" % (base.name, i) for i in reversed(positions)]


DIALECT = Dialect(rule_target=rule_target, declare=":%%s %s" % USER_CHAIN_POLICY, delete_jumps=_delete_jumps)


def _owns(spec: str, prefix: str) -> bool:
    return DIALECT.owns(spec, prefix)


def owned_from_save(saved: Saved, table: str, prefix: str) -> Owned:
    chains = tuple(Chain(c.name, c.rules) for c in saved.chains if c.name.startswith(prefix))
    base = tuple(Chain(c.name, c.rules) for c in saved.chains if c.name in BUILTIN_CHAINS[table])
    return Owned(tuple(sorted(chains, key=lambda c: c.name)), base)


def save_gaps(text: str, tables: Sequence[str] = ()) -> str:
    """The tables of `tables` an ebtables-save listing lacks ("" when none): `ebtables-save -t`
    prints its table also when nf_tables has none yet, so a listing without it did not reach us."""
    seen = {line[1:].strip() for line in text.splitlines() if line.startswith("*")}
    lacking = [name for name in tables if name not in seen]
    return "table %s" % ", ".join(lacking) if lacking else ""


def read(module, family: str, table: str, prefix: str) -> Owned:
    """The owned state of one bridge table, from a single ebtables-save (read again while the
    table is not in it: see tools.read)."""
    out = read_listing(module, [_tool(module, SAVE), "-t", table], lambda text: save_gaps(text, (table,)))[1]
    saved = parse_save(out, table)
    if saved.backend not in (None, "nf_tables"):
        raise ChainError(
            "ebtables-save reports the %s backend; only ebtables-nft (nf_tables) applies a restore as "
            "one transaction, so the ebtables module refuses any other" % saved.backend
        )
    return owned_from_save(saved, table, prefix)


def validate(table: Table, prefix: str) -> None:
    """Refuse a desired table before anything touches the kernel, naming what is wrong."""
    if table.family != FAMILY or table.name not in BUILTIN_CHAINS:
        raise ChainError("unsupported family/table %s/%s (ebtables: bridge/filter, bridge/nat)"
                         % (table.family, table.name))
    check_names(table, prefix)
    names = [c.name for c in table.chains]
    for chain in table.chains:
        for rule in chain.rules:
            _validate_rule("chain %s" % chain.name, rule, names, prefix)
    for jump in table.jumps:
        _validate_jump(jump, table.name, names, prefix)


def _validate_rule(where: str, rule: str, names: Sequence[str], prefix: str) -> None:
    if not rule.strip() or "\n" in rule or rule.lstrip().startswith(("-A ", "-I ", "-D ")):
        raise ChainError("%s: a rule is a spec without -A/-I/-D and on one line, got %r" % (where, rule))
    try:
        words = shlex.split(canonical(rule))
    except RuleSyntaxError as e:
        raise ChainError("%s: %s" % (where, e))
    target = rule_target(rule)
    if target and target.startswith(prefix) and target not in names:
        raise ChainError("%s: rule %r jumps to %s, which is not declared" % (where, rule, target))
    if target and not target.startswith(prefix) and target not in STANDARD_TARGETS + EXTENSION_TARGETS:
        raise ChainError("%s: rule %r jumps to %s, which is no verdict (%s), extension target or chain of "
                         "ours; owned chains never enter foreign chains"
                         % (where, rule, target, ", ".join(STANDARD_TARGETS)))
    for option in ("--nflog-prefix", "--log-prefix"):
        if option in words:
            value = words[words.index(option) + 1]
            if len(value) > NFLOG_PREFIX_MAX or '"' in value:
                raise ChainError("%s: %s %r must fit %d characters without a double quote"
                                 % (where, option, value, NFLOG_PREFIX_MAX))


def _validate_jump(jump: Jump, table: str, names: Sequence[str], prefix: str) -> None:
    where = "jump from %s to %s" % (jump.chain, jump.target)
    if jump.chain not in BUILTIN_CHAINS[table]:
        raise ChainError("%s: %r is not a built-in chain of table %s (%s)"
                         % (where, jump.chain, table, ", ".join(BUILTIN_CHAINS[table])))
    if jump.target not in names:
        raise ChainError("%s: %s is not declared" % (where, jump.target))
    if jump.position < 1:
        raise ChainError("%s: position starts at 1" % where)
    if rule_target(jump.match):
        raise ChainError("%s: the match %r must not name a target itself" % (where, jump.match))
    _validate_rule(where, jump_spec(jump), names, prefix)


def expected(table: Table, have: Owned, prefix: str) -> Owned:
    """The owned state once `table` is applied, rules in ebtables-save form, our jumps placed among
    the foreign rules of the built-in chains."""
    chains = tuple(
        Chain(c.name, tuple(canonical(r) for r in c.rules)) for c in sorted(table.chains, key=lambda c: c.name)
    )
    present = {b.name: b.rules for b in have.base}
    names = [b.name for b in have.base] + sorted({j.chain for j in table.jumps} - set(present))
    base = tuple(
        Chain(name, _place_jumps(present.get(name, ()), [j for j in table.jumps if j.chain == name], prefix))
        for name in names
    )
    return Owned(chains, base)


def _place_jumps(rules: Sequence[str], jumps: Sequence[Jump], prefix: str) -> Tuple[str, ...]:
    placed = [r for r in rules if not _owns(r, prefix)]
    for jump in sorted(jumps, key=lambda j: j.position):
        placed.insert(min(jump.position, len(placed) + 1) - 1, jump_spec(jump))  # past the end: last
    return tuple(placed)


def _jump_lines(base: Chain, prefix: str) -> List[str]:
    return DIALECT.jump_lines(base, prefix)


def plan(table: str, want: Owned, have: Owned, prefix: str) -> Plan:
    """The restore text turning `have` into `want`, mentioning nothing that already agrees."""
    return owned_chains.plan(DIALECT, table, want, have, prefix)


def owned_text(owned: Owned, prefix: str) -> str:
    """Our chains and jumps as readable save-like lines, for --diff."""
    lines: List[str] = []
    for chain in owned.chains:
        lines.append(":%s" % chain.name)
        lines += ["-A %s %s" % (chain.name, r) for r in chain.rules]
    for base in owned.base:
        lines += _jump_lines(base, prefix)
    return "\n".join(lines) + "\n" if lines else ""


def prepare(module, table: Table, prefix: str) -> Outcome:
    """Read the kernel once and decide; touches nothing (a refused table is not even read)."""
    validate(table, prefix)
    return prepare_from(table, read(module, table.family, table.name, prefix), prefix)


def converge(module, tables: Sequence[Table], prefix: str, check_mode: bool = False) -> List[Outcome]:
    """Bring every bridge table to its desired state, or leave all of them as they were."""
    return owned_chains.converge(module, BACKEND, tables, prefix, check_mode)


def scratch_text(outcome: Outcome, prefix: str) -> str:
    """The desired owned chains and jumps as a restore of an empty table."""
    lines = ["*%s" % outcome.table.name]
    lines += [":%s %s" % (c.name, USER_CHAIN_POLICY) for c in outcome.after.chains]
    lines += ["-A %s %s" % (c.name, r) for c in outcome.after.chains for r in c.rules]
    lines += ["-A %s %s" % (b.name, r) for b in outcome.after.base for r in b.rules if _owns(r, prefix)]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def test(module, outcome: Outcome, prefix: str = CHAIN_PREFIX) -> None:
    """ebtables-restore has no --test: restore the desired chains into a fresh network namespace
    of their own (`unshare --net`, gone when the command ends) and read them back there. Refuses a
    rule ebtables rejects, or one it prints otherwise (every later run would see a change)."""
    table = outcome.table.name
    if not (outcome.plan.changed and outcome.after.chains):
        return  # nothing to write, or only removals: nothing new to prove (a jump always enters a declared chain)
    text = scratch_text(outcome, prefix)
    script = "%s --noflush && %s -t %s" % (
        shlex.quote(_tool(module, RESTORE)), shlex.quote(_tool(module, SAVE)), shlex.quote(table))
    try:
        # a fresh namespace each time: reading it again writes the same into a new one
        out = read_listing(module, [_tool(module, "unshare"), "--net", "--", "/bin/sh", "-c", script],
                           lambda listing: save_gaps(listing, (table,)), data=text)[1]
    except ToolError as e:
        line = offending_line(e.stderr, text)
        raise ChainError("bridge %s: ebtables refuses the desired rules (tried in a scratch network "
                         "namespace, nothing applied): %s%s" % (table, e.stderr, "\noffending line: %s" % line if line else ""))
    got = owned_from_save(parse_save(out, table), table, prefix)
    want = Owned(outcome.after.chains, tuple(Chain(b.name, tuple(r for r in b.rules if _owns(r, prefix)))
                                             for b in outcome.after.base))
    if (got.chains, _nonempty(got.base)) != (want.chains, _nonempty(want.base)):
        raise ChainError("bridge %s: ebtables prints these rules otherwise than written (tried in a scratch "
                         "network namespace, nothing applied); write them in ebtables-save form:\n%s"
                         % (table, _mismatch(want, got)))


def _nonempty(base: Tuple[Chain, ...]) -> Tuple[Chain, ...]:
    return tuple(b for b in base if b.rules)


def apply(module, outcome: Outcome, prefix: str) -> None:
    """One ebtables-restore --noflush (one transaction), then read back what the kernel holds."""
    if not outcome.plan.changed:
        return
    _restore(module, outcome.plan.restore)
    now = read(module, outcome.table.family, outcome.table.name, prefix)
    if now != outcome.after:
        raise ChainError("bridge %s: after the restore the kernel holds another state than planned "
                         "(someone else changed the table meanwhile?):\n%s"
                         % (outcome.table.name, _mismatch(outcome.after, now)))


def restore_before(module, outcome: Outcome, prefix: str) -> None:
    """Put the owned chains and jumps back as `outcome` found them (foreign rules untouched), reading
    the kernel again: it also repairs a restore that failed half way."""
    now = read(module, outcome.table.family, outcome.table.name, prefix)
    back = plan(outcome.table.name, outcome.before, now, prefix)
    if back.changed:
        _restore(module, back.restore)


restore = restore_before  # the name the transaction (transaction/steps.py) calls


# ---------------------------------------------------------------- the rest of the transaction's surface
# netpol_host drives this backend as it drives iptables/chains.py: read_all, prepare_from, test, apply,
# restore, owned_text (docs/module_netpol_host.md, "How a backend plugs in").


def read_all(module, family: str, prefix: str) -> Dict[str, Owned]:
    """The owned state of both bridge tables from one ebtables-save. A table that does not exist
    yet has its built-in chains, empty, as `ebtables-save -t TABLE` prints them (nothing is created)."""
    if family != FAMILY:
        raise ChainError("the ebtables backend manages the bridge family, not %r" % family)
    out = read_listing(module, [_tool(module, SAVE)], save_gaps, may_be_empty=True)[1]  # empty: no table yet
    owned = {}
    for name in BUILTIN_CHAINS:
        saved = parse_save(out, name)
        if saved.backend not in (None, "nf_tables"):
            raise ChainError("ebtables-save reports the %s backend; only ebtables-nft (nf_tables) applies a "
                             "restore as one transaction, so netpol.fleet refuses any other" % saved.backend)
        owned[name] = owned_chains.with_builtins(owned_from_save(saved, name, prefix), BUILTIN_CHAINS[name])
    return owned


def prepare_from(table: Table, have: Owned, prefix: str) -> Outcome:
    """prepare() for a table whose owned state was already read (read_all)."""
    validate(table, prefix)
    want = expected(table, have, prefix)
    return Outcome(table, have, want, plan(table.name, want, have, prefix))


_tool = owned_chains.tool


def _restore(module, text: str) -> None:
    try:
        run(module, [_tool(module, RESTORE), "--noflush"], text)
    except ToolError as e:
        line = offending_line(e.stderr, text)
        raise ChainError("%s%s" % (e, "\noffending line: %s" % line if line else ""))


_mismatch = owned_chains.mismatch


BACKEND = owned_chains.Backend(prepare=prepare, test=test, apply=apply, restore=restore)
