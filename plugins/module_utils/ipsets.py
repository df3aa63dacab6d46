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
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ansible_collections.netpol.fleet.plugins.module_utils.hoststate import (
    SET_NAME_MAX,
    SET_TEMP_SUFFIX,
    IpSet,
    SetMember,
)
from ansible_collections.netpol.fleet.plugins.module_utils.ipset_text import (
    FAMILIES,
    FLAG_OPTIONS,
    SET_TYPES,
    VALUE_OPTIONS,
    EntryError,
    check_comment,
    compared_options,
    effective_options,
    normalize_entry,
    parse_member,
    parse_references,
    parse_save,
    render_create,
    render_entry,
)
from ansible_collections.netpol.fleet.plugins.module_utils.tools import ToolError, run

# A managed name must leave room for its temporary twin within the kernel's 31 characters.
NAME_MAX = SET_NAME_MAX - len(SET_TEMP_SUFFIX)
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:+-]*$")
Prefixes = Union[str, Tuple[str, ...]]  # what str.startswith takes: one prefix or several
_TRUE = ("true", "yes", "on", "1", "")
_BY_ENTRY = attrgetter("entry")  # entries are unique within a normalised set
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
    before: Tuple[str, ...] = field(default=())  # diff lines, "name: entry"
    after: Tuple[str, ...] = field(default=())

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


def build_set(name: str, set_type: str = "hash:net", family: str = "inet",
              members: Iterable[Any] = (), options: Any = None) -> IpSet:
    """A validated IpSet from module-style arguments: members are strings (the entry, optionally
    followed by its flags as `ipset save` prints them: `10.0.0.0/8 nomatch comment "x"`) or
    {entry, nomatch, comment} dicts; options a dict or a list of (name, value) pairs as
    HostState.to_dict() gives them."""
    items = []
    for index, item in enumerate(members or ()):
        try:
            items.append(_member(item))
        except (EntryError, PlanError) as e:
            raise PlanError("set %s: members[%d]: %s" % (name, index, e))
    return normalize_set(IpSet(name, set_type, family, tuple(items), tuple(_pairs(options))))


def normalize_set(ipset: IpSet) -> IpSet:
    """Validate names, type, family and options; entries in `ipset save` form, sorted, unique."""
    check_name(ipset.name)
    if ipset.type not in SET_TYPES:
        raise PlanError("set %s: type %r is not one of %s" % (ipset.name, ipset.type, ", ".join(SET_TYPES)))
    if ipset.family not in FAMILIES:
        raise PlanError("set %s: family %r is not inet or inet6" % (ipset.name, ipset.family))
    members = []
    for index, member in enumerate(ipset.members):
        try:
            members.append(_normal_member(ipset.type, ipset.family, member))
        except EntryError as e:
            raise PlanError("set %s: members[%d]: %s" % (ipset.name, index, e))
    if ipset.type not in NOMATCH_TYPES and any(m.nomatch for m in members):
        raise PlanError("set %s: nomatch needs a hash:net* type" % ipset.name)
    unique = {m.entry: m for m in members}
    if len(unique) < len(members) and len(unique) < len(set(members)):
        raise PlanError("set %s: entries listed twice with different nomatch/comment" % ipset.name)
    options = _options(ipset.name, ipset.options, len(unique))
    return IpSet(ipset.name, ipset.type, ipset.family, tuple(sorted(unique.values(), key=_BY_ENTRY)), options)


def _normal_member(set_type: str, family: str, member: SetMember) -> SetMember:
    """The member in `ipset save` form; the same object when it already is (the common case)."""
    entry = normalize_entry(set_type, family, member.entry)
    comment = check_comment(member.comment) if member.comment else ""
    if entry == member.entry and comment == member.comment and isinstance(member.nomatch, bool):
        return member
    return SetMember(entry, bool(member.nomatch), comment)


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


def _options(name: str, pairs: Iterable[Tuple[str, Any]], count: int) -> Tuple[Tuple[str, str], ...]:
    options: Dict[str, str] = {}
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
    return tuple(sorted(options.items()))


def _flag(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in _TRUE + _FALSE:
        raise PlanError("%s=%r is not a boolean" % (key, value))
    return text in _TRUE


# ---------------------------------------------------------------- plan (pure)


def temp_name(name: str) -> str:
    return name + SET_TEMP_SUFFIX


def managed(name: str, names: Iterable[str], purge_prefix: Prefixes = "") -> bool:
    """Whether a kernel set concerns this run: a named set, its temporary twin, or purge prefix."""
    base = name[: -len(SET_TEMP_SUFFIX)] if name.endswith(SET_TEMP_SUFFIX) else name
    return base in names or bool(purge_prefix) and name.startswith(purge_prefix)


def plan(desired: Sequence[IpSet], actual: Mapping[str, IpSet], references: Mapping[str, int],
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
        fill.append(render_create(want, built))
        add = "add %s " % built
        fill.extend([add + entry for entry in _entries(want)])
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
        changes.append(SetChange(name, removed=_entries(actual[name]), destroyed=True))
    script = ["destroy %s" % n for n in stale] + fill + commit + cleanup
    before, after = _diff_lines(changes, actual, {s.name: s for s in desired})
    temporaries = tuple(c.name if c.name not in actual else temp_name(c.name) for c in changes if c.name in wanted)
    return Plan(tuple(script), tuple(changes), tuple(kept), temporaries, before, after)


def _set_change(want: IpSet, have: Optional[IpSet], references: Mapping[str, int]) -> Optional[SetChange]:
    if have is None:
        return SetChange(want.name, added=_entries(want), created=True)
    wanted, present = _entries(want), _entries(have)
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


def _refuse_if_referenced(name: str, references: Mapping[str, int], what: str, hint: str = "") -> None:
    count = references.get(name, 0)
    if count:
        raise PlanError("set %s %s is referenced %d time(s) by iptables rules or list:set sets; "
                        "remove those references first%s" % (name, what, count, "; " + hint if hint else ""))


def _to_destroy(actual: Mapping[str, IpSet], wanted: Iterable[str], absent: Sequence[str],
                purge_prefix: Prefixes, stale: Sequence[str]) -> List[str]:
    purged = [n for n in actual if purge_prefix and n.startswith(purge_prefix)]
    skip = set(wanted) | set(stale)
    return sorted(n for n in set(absent) | set(purged) if n in actual and n not in skip)


def _entries(ipset: IpSet) -> Tuple[str, ...]:
    return tuple(map(render_entry, ipset.members))


def _header(ipset: IpSet) -> str:
    options = compared_options(effective_options(ipset))
    words = [ipset.type, "family", ipset.family] + ["%s %s" % kv if kv[1] else kv[0] for kv in sorted(options.items())]
    return " ".join(words)


def _diff_lines(changes: Sequence[SetChange], actual: Mapping[str, IpSet],
                desired: Mapping[str, IpSet]) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """Per changed set: its header (as context when unchanged), then one line per member removed
    (before) or added (after), e.g. `netpol4-abc: 10.0.0.5`."""
    before: List[str] = []
    after: List[str] = []
    for change in sorted(changes, key=lambda c: c.name):
        if change.name in actual:
            before.append("%s: create %s" % (change.name, _header(actual[change.name])))
        if change.name in desired:
            after.append("%s: create %s" % (change.name, _header(desired[change.name])))
        before += [change.name + ": " + entry for entry in change.removed]
        after += [change.name + ": " + entry for entry in change.added]
    return tuple(before), tuple(after)


# ---------------------------------------------------------------- kernel I/O


def read_state(module, ipset_bin: str, names: Iterable[str], purge_prefix: Prefixes = "",
               keep: Iterable[str] = ()) -> Tuple[Dict[str, IpSet], Dict[str, int]]:
    """The managed sets as the kernel has them (but those in `keep`, whose members do not matter),
    and every set's reference count. Read-only; `ipset save` only runs when a managed set exists."""
    names, kept = set(names), set(keep) - set(names)

    def wanted(name: str) -> bool:
        return name not in kept and managed(name, names, purge_prefix)

    references = parse_references(run(module, [ipset_bin, "list", "-t"])[1])
    if not any(wanted(n) for n in references):
        return {}, references
    save = run(module, [ipset_bin, "save"])[1]
    return parse_save(save, wanted), references


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
