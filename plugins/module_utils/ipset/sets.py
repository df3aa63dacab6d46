# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ipset backend: read the kernel's sets, plan one restore script, apply it.

`plan()` is a pure function of (desired, actual); only `read_state()` and `apply()` run the tool.
Standard library only, Python 3.9: the ipset module imports this on managed hosts.

Atomicity: every changed set is first built complete under a temporary name (name + "-t") and only
then swapped (or renamed) in, and all swaps come after all fills. A set that does not exist yet is
created and filled under its own name: no rule can reference it before it exists (the chains are
applied after the sets), so nobody sees it half filled. `ipset restore` is not transactional: a
rejected line is rolled back (the temporaries and the new sets of the script are destroyed); a killed
process can leave temporaries, which the next run destroys, and a partly filled new set, which no rule
references and which the next run compares and converges like any other set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import (
    SET_NAME_MAX,
    SET_TEMP_SUFFIX,
    SetMember,
)
from ansible_collections.netpol.fleet.plugins.module_utils.ipset.text import (
    FAMILIES,
    FLAG_OPTIONS,
    KERNEL_CHOSEN,
    SET_TYPES,
    VALUE_OPTIONS,
    EntryError,
    Parsed,
    SavedSet,
    all_printed,
    auto_maxelem,
    check_comment,
    compared_options,
    create_line,
    normalize_entry,
    parse_member,
    parse_references,
    parse_save,
    render_entry,
    split_plain,
)
from ansible_collections.netpol.fleet.plugins.module_utils.tools import ToolError, read, run

# A managed name must leave room for its temporary twin within the kernel's 31 characters.
NAME_MAX = SET_NAME_MAX - len(SET_TEMP_SUFFIX)
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:+-]*$")
Prefixes = Union[str, Tuple[str, ...]]  # what str.startswith takes: one prefix or several
_TRUE = ("true", "yes", "on", "1", "")
FLAGGED_FAST_MAX = 64  # members with flags the fast path normalises one by one
NOMATCH_TYPES = tuple(t for t in SET_TYPES if t.startswith("hash:net"))
_FALSE = ("false", "no", "off", "0")


class PlanError(ValueError):
    """The desired state cannot be reached safely; nothing has been changed."""


@dataclass(frozen=True)
class SetChange:
    name: str
    added: Tuple[str, ...] = ()
    removed: Tuple[str, ...] = ()
    created: bool = False
    destroyed: bool = False

    def to_dict(self) -> Dict[str, Any]:
        return {"added": list(self.added), "removed": list(self.removed),
                "created": self.created, "destroyed": self.destroyed}


@dataclass(frozen=True)
class Plan:
    script: Tuple[str, ...]  # `ipset restore` lines: destroy stale temps, fill temps, swap in, destroy
    changes: Tuple[SetChange, ...]
    kept_referenced: Tuple[str, ...] = ()
    temporaries: Tuple[str, ...] = ()  # sets this script creates (temps, new sets): what a rollback destroys

    @property
    def changed(self) -> bool:
        return bool(self.script)


# ---------------------------------------------------------------- desired state, validated


def check_name(name: str) -> str:
    if not _NAME.match(name or "") or len(name) > NAME_MAX:
        raise PlanError(
            "set name %r: use 1-%d characters of letters, digits and _.:+- (the kernel allows %d, and %r "
            "is appended to build a changed set before the swap)" % (name, NAME_MAX, SET_NAME_MAX, SET_TEMP_SUFFIX))
    if name.endswith(SET_TEMP_SUFFIX):
        raise PlanError("set name %r: the suffix %r is reserved for temporary sets" % (name, SET_TEMP_SUFFIX))
    return name


def build_set(name: str, set_type: str = "hash:net", family: str = "inet", members: Iterable[Any] = (),
              options: Any = None, where: Callable[[int], str] = "members[%d]".__mod__) -> SavedSet:
    """A validated set from module-style arguments, entries in `ipset save` form, sorted, each once.
    Members are strings (the entry, optionally followed by its flags as `ipset save` prints them:
    `10.0.0.0/8 nomatch comment "x"`), {entry, nomatch, comment} dicts or SetMembers; options a dict
    or a list of (name, value) pairs as HostState.to_dict() gives them. `where` names a member in errors."""
    _check_header(name, set_type, family)
    items = list(members or ())
    fast = _compiled_entries(name, set_type, family, items)
    entries, commented = fast if fast is not None else _normal_entries(name, set_type, family, items, where)
    return SavedSet(name, set_type, family, tuple(entries), _options(name, _pairs(options), len(entries), commented))


def _compiled_entries(name: str, set_type: str, family: str, items: Sequence[Any]) -> Optional[Tuple[List[str], bool]]:
    """The compiled case, checked in C: plain strings in `ipset save` form, final already, but for the
    few with flags (the labelled first member, nomatch excepts), normalised one by one. None when
    anything else is there: the slow path then says what is wrong, naming the member."""
    if set_type not in ("hash:ip", "hash:net") or not all(isinstance(i, str) for i in items):
        return None
    flagged = [i for i in items if " " in i]
    plain = [i for i in items if " " not in i] if flagged else items
    if len(flagged) > FLAGGED_FAST_MAX or not all_printed(plain, family, net=set_type == "hash:net"):
        return None
    try:
        entries, commented = _normal_entries(name, set_type, family, flagged, "%d".__mod__) if flagged else ([], False)
    except PlanError:
        return None
    if {e.split(" ", 1)[0] for e in entries} & set(plain):  # one entry twice, with and without flags
        return None
    return sorted(set(plain).union(entries)), commented


def _check_header(name: str, set_type: str, family: str) -> None:
    check_name(name)
    if set_type not in SET_TYPES:
        raise PlanError("set %s: type %r is not one of %s" % (name, set_type, ", ".join(SET_TYPES)))
    if family not in FAMILIES:
        raise PlanError("set %s: family %r is not inet or inet6" % (name, family))


def _normal_entries(name: str, set_type: str, family: str, items: Sequence[Any],
                    where: Callable[[int], str]) -> Tuple[List[str], bool]:
    """Every member normalised one by one (the slow path, which says what is wrong): its rendered
    entries, sorted, each once, and whether any member has a comment."""
    members = []
    for index, item in enumerate(items):
        try:
            members.append(_normal_member(set_type, family, _member(item)))
        except (EntryError, PlanError) as e:
            raise PlanError("set %s: %s: %s" % (name, where(index), e))
    if set_type not in NOMATCH_TYPES and any(m.nomatch for m in members):
        raise PlanError("set %s: nomatch needs a hash:net* type" % name)
    unique = {m.entry: m for m in members}
    if len(unique) < len(members) and len(unique) < len(set(members)):
        raise PlanError("set %s: entries listed twice with different nomatch/comment" % name)
    return sorted(map(render_entry, unique.values())), any(m.comment for m in members)


def _normal_member(set_type: str, family: str, member: SetMember) -> SetMember:
    """The member in `ipset save` form."""
    comment = check_comment(member.comment) if member.comment else ""
    return SetMember(normalize_entry(set_type, family, member.entry), bool(member.nomatch), comment)


def _member(item: Any) -> SetMember:
    if isinstance(item, str):
        return SetMember(item) if " " not in item.strip() else parse_member(item)
    if isinstance(item, SetMember):
        return item
    if isinstance(item, Mapping):
        unknown = set(item) - {"entry", "nomatch", "comment"}
        if "entry" not in item or unknown:
            raise PlanError("%r: use a string or a dict with entry, nomatch, comment" % (item,))
        return SetMember(str(item["entry"]), _flag("nomatch", item.get("nomatch") or False),
                         str(item.get("comment") or ""))
    return SetMember(str(item))


def _pairs(options: Any) -> List[Tuple[str, Any]]:
    if not options:
        return []
    if isinstance(options, Mapping):
        return list(options.items())
    return [tuple(pair) for pair in options]


def _options(name: str, pairs: Iterable[Tuple[str, Any]], count: int, commented: bool) -> Tuple[Tuple[str, str], ...]:
    """The create options as the kernel will print them back: maxelem always (the default 65536, or
    the next power of two that holds every member), comment when a member has one."""
    options: Dict[str, str] = {"comment": ""} if commented else {}
    for key, value in pairs:
        if key in FLAG_OPTIONS:
            if _flag(key, value):
                options[key] = ""
        elif key in VALUE_OPTIONS:
            if not str(value).isdigit():
                raise PlanError("set %s: option %s=%r is not a whole number" % (name, key, value))
            options[key] = str(int(value))
        else:
            raise PlanError("set %s: option %r is not one of %s" % (
                name, key, ", ".join(VALUE_OPTIONS + FLAG_OPTIONS)))
    if int(options.get("maxelem", count)) < count:
        raise PlanError("set %s: %d members exceed maxelem %s" % (name, count, options["maxelem"]))
    options.setdefault("maxelem", str(auto_maxelem(count)))
    return tuple(sorted(options.items()))


def _flag(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in _TRUE + _FALSE:
        raise PlanError("%s=%r is not a boolean" % (key, value))
    return text in _TRUE


# ---------------------------------------------------------------- desired state, from `ipset save` text


def sets_from_text(text: str) -> List[SavedSet]:
    """Desired sets written as `ipset save` prints them: `create NAME TYPE [family F] [OPTIONS]`, then
    `add NAME ENTRY [nomatch] [comment "TEXT"]` lines (blank lines and `#` comments are skipped),
    validated like module arguments; every error names its line."""
    parsed = split_plain(text)
    if parsed is None:
        parsed = _line_by_line(text)
    return [_set_from_text(text, name, words, members) for name, (words, members) in parsed.items()]


def _line_by_line(text: str) -> Parsed:
    parsed: Parsed = {}
    for number, line in enumerate(text.splitlines(), 1):
        verb, _space, rest = line.strip().partition(" ")
        name, _space, value = rest.strip().partition(" ")
        if verb == "add" and name in parsed and value:
            parsed[name][1].append(value)
        elif verb == "create" and name not in parsed and value:
            parsed[name] = (value.split(), [])
        elif verb and not verb.startswith("#"):
            raise PlanError("line %d: %r: %s" % (number, line, _misplaced(verb, name, value, name in parsed)))
    return parsed


def _misplaced(verb: str, name: str, value: str, created: bool) -> str:
    if verb not in ("create", "add"):
        return "only create and add lines are read"
    if not value:
        return "%s needs a set name and %s" % (verb, "a type" if verb == "create" else "an entry")
    return "a second create line for %s" % name if created else "add before the create line of %s" % name


def _set_from_text(text: str, name: str, words: List[str], members: List[str]) -> SavedSet:
    family, options, rest = "inet", [], iter(words[1:])
    for key in rest:
        if key in FLAG_OPTIONS:
            options.append((key, True))
            continue
        value = next(rest, None)
        if value is None or key not in ("family",) + VALUE_OPTIONS + KERNEL_CHOSEN:
            raise PlanError("set %s: line %d: %r is not a create option with its value (family, %s; flags %s)" % (
                name, _line_number(text, "create", name), key, ", ".join(VALUE_OPTIONS), ", ".join(FLAG_OPTIONS)))
        if key == "family":
            family = value
        elif key in VALUE_OPTIONS:  # bucketsize and initval, as ipset save prints them, are the kernel's
            options.append((key, value))
    return build_set(name, words[0], family, members, options,
                     where=lambda index: "line %d" % _line_number(text, "add", name, index))


def _line_number(text: str, verb: str, name: str, index: int = 0) -> int:
    """The line of a set's create line or index-th add line: worked out only for an error message."""
    lines = enumerate(text.splitlines(), 1)
    return [number for number, line in lines if line.split(None, 2)[:2] == [verb, name]][index]


# ---------------------------------------------------------------- plan (pure)


def temp_name(name: str) -> str:
    return name + SET_TEMP_SUFFIX


def managed(name: str, names: Iterable[str], purge_prefix: Prefixes = "") -> bool:
    """Whether a kernel set concerns this run: a named set, its temporary twin, or purge prefix."""
    base = name[: -len(SET_TEMP_SUFFIX)] if name.endswith(SET_TEMP_SUFFIX) else name
    return base in names or bool(purge_prefix) and name.startswith(purge_prefix)


def plan(desired: Sequence[SavedSet], actual: Mapping[str, SavedSet], references: Mapping[str, int],
         absent: Sequence[str] = (), purge_prefix: Prefixes = "", keep: Iterable[str] = ()) -> Plan:
    """The restore script that turns `actual` into `desired` (sets already normalised); the sets named
    in `keep` are left alone by the purge, whatever their members."""
    wanted = {s.name for s in desired}
    clash = wanted & set(absent)
    if clash:
        raise PlanError("sets both present and absent: %s" % ", ".join(sorted(clash)))
    stale = [temp_name(n) for n in sorted(wanted | set(absent)) if temp_name(n) in actual]
    fill: List[str] = []
    commit: List[str] = []
    cleanup: List[str] = []
    changes: List[SetChange] = []
    for name in stale:
        _refuse_if_referenced(name, references, "is a temporary set left by an interrupted run but")
        changes.append(SetChange(name, destroyed=True))
    for want in desired:
        have = actual.get(want.name)
        change = _set_change(want, have, references)
        if change is None:
            continue
        changes.append(change)
        built = want.name if have is None else temp_name(want.name)
        fill.append(create_line(built, want.type, want.family, dict(want.options)))
        add = "add %s " % built
        fill.extend([add + entry for entry in (change.added if have is None else want.entries)])
        if have is None:
            continue  # built in place: no rule can reference a set that does not exist yet
        if change.destroyed:  # a new type or family cannot be swapped in; unreferenced, so replace
            commit += ["destroy %s" % want.name, "rename %s %s" % (temp_name(want.name), want.name)]
        else:
            commit.append("swap %s %s" % (temp_name(want.name), want.name))
            cleanup.append("destroy %s" % temp_name(want.name))
    kept: List[str] = []
    for name in _to_destroy(actual, wanted | set(keep), absent, purge_prefix, stale):
        if name in absent:
            _refuse_if_referenced(name, references, "is to be absent but")
        elif references.get(name, 0):
            kept.append(name)
            continue
        cleanup.append("destroy %s" % name)
        changes.append(SetChange(name, removed=actual[name].entries, destroyed=True))
    script = ["destroy %s" % n for n in stale] + fill + commit + cleanup
    temporaries = tuple(c.name if c.name not in actual else temp_name(c.name) for c in changes if c.name in wanted)
    return Plan(tuple(script), tuple(changes), tuple(kept), temporaries)


def _set_change(want: SavedSet, have: Optional[SavedSet], references: Mapping[str, int]) -> Optional[SetChange]:
    if have is None:
        return SetChange(want.name, added=want.entries, created=True)
    wanted, present = want.entries, have.entries
    same = wanted == present  # both sorted by entry: the no-op compares two tuples of strings
    added = () if same else tuple(sorted(set(wanted) - set(present)))
    removed = () if same else tuple(sorted(set(present) - set(wanted)))
    if (have.type, have.family) != (want.type, want.family):
        _refuse_if_referenced(want.name, references, "changes from %s %s to %s %s but" % (
            have.type, have.family, want.type, want.family), "give the new type a new set name")
        return SetChange(want.name, added, removed, created=True, destroyed=True)
    if added or removed or _header(have) != _header(want):
        return SetChange(want.name, added, removed)
    return None


def without_references(references: Mapping[str, int], released: Mapping[str, int]) -> Dict[str, int]:
    """The reference counts once the `released` references (per set) are gone."""
    return {name: max(count - released.get(name, 0), 0) for name, count in references.items()}


def _refuse_if_referenced(name: str, references: Mapping[str, int], what: str, hint: str = "") -> None:
    count = references.get(name, 0)
    if count:
        raise PlanError("set %s %s is referenced %d time(s) by iptables rules or list:set sets; "
                        "remove those references first%s" % (name, what, count, "; " + hint if hint else ""))


def _to_destroy(actual: Mapping[str, SavedSet], wanted: Iterable[str], absent: Sequence[str],
                purge_prefix: Prefixes, stale: Sequence[str]) -> List[str]:
    purged = [n for n in actual if purge_prefix and n.startswith(purge_prefix)]
    skip = set(wanted) | set(stale)
    return sorted(n for n in set(absent) | set(purged) if n in actual and n not in skip)


def _header(ipset: SavedSet) -> str:
    options = compared_options(dict(ipset.options))
    words = [ipset.type, "family", ipset.family] + ["%s %s" % kv if kv[1] else kv[0] for kv in sorted(options.items())]
    return " ".join(words)


def _label(ipset: SavedSet) -> str:
    """What a hashed set name stands for: the comment of its first member (ipset has no comment of
    its own for a set; compile puts the set's key on its first member). Other members' comments are theirs."""
    first = ipset.entries[0] if ipset.entries else ""
    return "  # " + parse_member(first).comment if ' comment "' in first else ""


def diff(the_plan: Plan, desired: Sequence[SavedSet], actual: Mapping[str, SavedSet]) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """The plan's --diff as (before, after) lines: per changed set its header (as context when
    unchanged), then one line per member removed (before) or added (after), e.g. `netpol4-abc: 10.0.0.5`.
    Only built when asked for: it is one more string per changed member."""
    wanted = {s.name: s for s in desired}
    before: List[str] = []
    after: List[str] = []
    for change in sorted(the_plan.changes, key=lambda c: c.name):
        if change.name in actual:
            before.append("%s: create %s%s" % (change.name, _header(actual[change.name]), _label(actual[change.name])))
        if change.name in wanted:
            after.append("%s: create %s%s" % (change.name, _header(wanted[change.name]), _label(wanted[change.name])))
        before += [change.name + ": " + entry for entry in change.removed]
        after += [change.name + ": " + entry for entry in change.added]
    return tuple(before), tuple(after)


# ---------------------------------------------------------------- kernel I/O


def read_state(module, ipset_bin: str, names: Iterable[str], purge_prefix: Prefixes = "",
               keep: Iterable[str] = ()) -> Tuple[Dict[str, SavedSet], Dict[str, int]]:
    """The managed sets as the kernel has them (but those in `keep`, whose members do not matter),
    and every set's reference count. Read-only; `ipset save` only runs when a managed set exists."""
    names, kept = set(names), set(keep) - set(names)

    def wanted(name: str) -> bool:
        return name not in kept and managed(name, names, purge_prefix)

    # empty only when two reads in a row say so (no set yet), see tools.read
    references = parse_references(read(module, [ipset_bin, "list", "-t"], _header_gaps, may_be_empty=True)[1])
    if not any(wanted(n) for n in references):
        return {}, references
    listed = [n for n in references if wanted(n)]
    save = read(module, [ipset_bin, "save"], lambda text: _save_gaps(text, listed))[1]
    return parse_save(save, wanted), references


def _header_gaps(text: str) -> str:
    """What an `ipset list -t` listing lacks: every set it names ends its header with the number of
    its entries."""
    names = re.findall(r"^Name: (\S+)$", text, re.M)
    counted = len(re.findall(r"^Number of entries: ", text, re.M))
    return "the end of the header of set %s" % names[-1] if names and counted < len(names) else ""


def _save_gaps(text: str, names: Sequence[str]) -> str:
    """The sets of `names` (listed by `ipset list -t` just before) an `ipset save` lacks."""
    created = set(re.findall(r"^create (\S+) ", text, re.M))
    lacking = [name for name in names if name not in created]
    return "set %s" % ", ".join(lacking) if lacking else ""


_LINE = re.compile(r"Error in line (\d+):")


def apply(module, ipset_bin: str, the_plan: Plan) -> None:
    """Run the script in one `ipset restore`; on failure destroy the temporaries it left, so the live
    sets stay exactly as they were, and raise a ToolError naming the rejected line."""
    script = "\n".join(the_plan.script) + "\n"
    try:
        run(module, [ipset_bin, "restore"], data=script)
    except ToolError as error:
        _rollback(module, ipset_bin, the_plan.temporaries)
        found = _LINE.search(error.stderr)
        if found and 0 < int(found.group(1)) <= len(the_plan.script):
            error.args = ("ipset restore rejected %r: %s" % (the_plan.script[int(found.group(1)) - 1], error.stderr),)
        raise


def _rollback(module, ipset_bin: str, temporaries: Sequence[str]) -> None:
    existing = set(run(module, [ipset_bin, "list", "-n"], check=False)[1].split())
    leftovers = [t for t in temporaries if t in existing]
    if leftovers:
        run(module, [ipset_bin, "restore"], data="".join("destroy %s\n" % t for t in leftovers), check=False)
