# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ipset text, both ways: render `ipset restore` input, parse `ipset save` / `ipset list -t` output.

Pure functions, standard library only, Python 3.9: modules import this on managed hosts.
Entries are normalised to the exact form `ipset save` prints (checked against ipset 7.17), so
desired and actual sets compare as plain strings: a SavedSet holds each member as the text that
follows `add NAME`, not as an object (100,000 members are read, compared and written as strings).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import IpSet, SetMember

SET_TYPES = ("hash:ip", "hash:net", "hash:ip,port", "hash:net,port", "hash:net,iface")
FAMILIES = ("inet", "inet6")
PORT_PROTOCOLS = ("tcp", "udp", "sctp", "udplite")
DEFAULT_MAXELEM = 65536
COMMENT_MAX = 255  # the kernel's limit, in bytes
IFACE_MAX = 15  # IFNAMSIZ - 1

# Create options whose value the kernel reports back; hashsize is only a sizing hint (the kernel
# grows it), bucketsize and initval are chosen by the kernel: none of those three is compared.
VALUE_OPTIONS = ("hashsize", "maxelem", "timeout")
FLAG_OPTIONS = ("counters", "comment", "skbinfo")
KERNEL_CHOSEN = ("bucketsize", "initval")

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
_AF = {"inet": socket.AF_INET, "inet6": socket.AF_INET6}
_SINGLE = ("hash:ip", "hash:net")  # entries of one address or CIDR, no port or interface
_ZERO = (bytes(4), bytes(16))
_SHORT_PREFIXES = {32: frozenset(str(n) for n in range(1, 32)), 128: frozenset(str(n) for n in range(1, 128))}


@dataclass(frozen=True)
class SavedSet:
    """A set as `ipset save` prints it, and as the ipset backend compares it."""

    name: str
    type: str
    family: str
    entries: Tuple[str, ...] = ()  # `ENTRY [nomatch] [comment "TEXT"]`, sorted, each entry once
    options: Tuple[Tuple[str, str], ...] = ()  # sorted; maxelem always, comment when a member has one


class EntryError(ValueError):
    """A set, member or option the kernel would refuse (or silently expand); says why."""


# ---------------------------------------------------------------- entries, as `ipset save` prints them


def normalize_entry(set_type: str, family: str, entry: str) -> str:
    """One member entry in the form `ipset save` prints it; EntryError if ipset would refuse it."""
    if set_type in _SINGLE and _printed(entry, family, set_type == "hash:net"):
        return entry  # the hot path: a compiled host state holds entries in printed form already
    parts = str(entry).strip().split(",")
    element, rest = parts[0], parts[1:]
    if len(rest) != set_type.count(","):
        raise EntryError("%r does not fit a %s set (expected %s)" % (entry, set_type, _shape(set_type)))
    first = _host(element, family) if set_type.startswith("hash:ip") else _net(element, family)
    if set_type.endswith(",port"):
        return "%s,%s" % (first, _port(rest[0]))
    if set_type.endswith(",iface"):
        return "%s,%s" % (first, _iface(rest[0]))
    return first


def _shape(set_type: str) -> str:
    return set_type.split(":", 1)[1].replace("ip", "ADDRESS").replace("net", "CIDR").replace(
        "port", "[PROTO:]PORT").replace("iface", "[physdev:]IFACE")


def _address_text(address: Address) -> str:
    """Like glibc inet_ntop: IPv4-mapped and IPv4-compatible IPv6 addresses end in dotted quad."""
    if address.version == 4:
        return str(address)
    packed = address.packed
    if packed[:10] == bytes(10):
        if packed[10:12] == b"\xff\xff":
            return "::ffff:%s" % ipaddress.IPv4Address(packed[12:])
        if packed[10:12] == bytes(2) and packed[12:14] != bytes(2):
            return "::%s" % ipaddress.IPv4Address(packed[12:])
    return str(address)


def _parse(text: str, family: str) -> Tuple[Address, int]:
    """(network address, prefix length) of an address or CIDR of the set's family."""
    text = text.strip()
    try:  # a plain address is by far the most common member, and ip_address is the cheap parser
        if "/" in text:
            net = ipaddress.ip_network(text, strict=False)
            address, length = net.network_address, net.prefixlen
        else:
            address = ipaddress.ip_address(text)
            length = address.max_prefixlen
        if "%" in text:  # ipaddress takes IPv6 scope ids (fe80::1%eth0); ipset cannot resolve them
            raise ValueError(text)
    except ValueError:
        raise EntryError("%r is not an IP address or CIDR" % text)
    if address.version != (4 if family == "inet" else 6):
        raise EntryError("%r is not an address of family %s" % (text, family))
    return address, length


def _printed(text: str, family: str, net: bool) -> bool:
    return all_printed([text], family, net)


def all_printed(entries: List[str], family: str, net: bool) -> bool:
    """Whether every address (or, for net, CIDR) is valid and exactly as `ipset save` prints it: the
    common case, checked in C. ipset prints through libc's inet_ntop, so a text that survives the
    round trip unchanged, is not all-zero, has no host bits set and no full-length prefix is final;
    anything else takes the slow path, which normalises it or says what is wrong."""
    af = _AF[family]
    try:  # plain addresses, the bulk of any large set: the round trip over the whole list at once
        packed = list(map(socket.inet_pton, repeat(af), entries))
        return list(map(socket.inet_ntop, repeat(af), packed)) == entries and _ZERO[af != socket.AF_INET] not in packed
    except (TypeError, OSError, ValueError):  # a CIDR among them (or not an address at all)
        return _all_printed_one_by_one(entries, af, net)


def _all_printed_one_by_one(entries: List[str], af: int, net: bool) -> bool:
    bits = 32 if af == socket.AF_INET else 128
    short = _SHORT_PREFIXES[bits] if net else ()
    pton, ntop = socket.inet_pton, socket.inet_ntop  # locals: this loop runs once per member
    try:
        for text in entries:
            address, slash, length = text.partition("/")
            packed = pton(af, address)
            if ntop(af, packed) != address:
                return False
            if not slash:
                if packed in _ZERO:
                    return False
            elif length not in short or int.from_bytes(packed, "big") & ((1 << (bits - int(length))) - 1):
                return False
    except (AttributeError, TypeError, OSError, ValueError):  # not a string, not an address
        return False
    return True


def _host(text: str, family: str) -> str:
    if _printed(text, family, net=False):
        return text
    address, length = _parse(text, family)
    if length != address.max_prefixlen:
        raise EntryError("%r is a network; ipset would expand it into addresses: use a hash:net set" % text)
    return _nonzero(address, text)


def _net(text: str, family: str) -> str:
    if _printed(text, family, net=True):
        return text
    address, length = _parse(text, family)
    if length == 0:
        half = "0.0.0.0/1 and 128.0.0.0/1" if address.version == 4 else "::/1 and 8000::/1"
        raise EntryError("%r: a hash set cannot hold a /0; use the two halves %s" % (text, half))
    if length == address.max_prefixlen:
        return _nonzero(address, text)
    return "%s/%d" % (_address_text(address), length)


def _nonzero(address: Address, text: str) -> str:
    if not int(address):
        raise EntryError("%r: the all-zero address cannot be stored in a hash set" % text)
    return _address_text(address)


def _port(text: str) -> str:
    proto, port = text.strip().rpartition(":")[::2]
    proto = (proto or "tcp").lower()
    if proto not in PORT_PROTOCOLS:
        raise EntryError("protocol %r is not supported (use one of %s)" % (proto, ", ".join(PORT_PROTOCOLS)))
    if port.isdigit() and int(port) <= 65535:
        return "%s:%d" % (proto, int(port))
    try:  # a service name, resolved from /etc/services as ipset itself does
        return "%s:%d" % (proto, socket.getservbyname(port, proto))
    except OSError:
        raise EntryError("%r is not a port number (0-65535) or a %s service name; ranges are not supported" % (port, proto))


def _iface(text: str) -> str:
    physdev, name = text.strip().rpartition(":")[::2]
    if physdev not in ("", "physdev") or not re.match(r"^[^\s/:,\"]{1,%d}$" % IFACE_MAX, name):
        raise EntryError("%r is not an interface name ([physdev:]NAME, at most %d characters)" % (text, IFACE_MAX))
    return text.strip()


def parse_member(text: str) -> SetMember:
    """A member written as its entry followed by its flags, as `ipset save` prints it after the set
    name: `ENTRY [nomatch] [comment "TEXT"]` (the compact form of {entry, nomatch, comment})."""
    words = _words(text)
    entry, nomatch, comment = words[0], False, None
    rest = iter(words[1:])
    for word in rest:
        if word == "nomatch" and not nomatch:
            nomatch = True
        elif word == "comment" and comment is None:
            comment = _unquote(next(rest, ""), text)
        else:
            raise EntryError('%r: only nomatch and comment "TEXT" may follow the entry, once each' % text)
    return SetMember(entry, nomatch, comment or "")


def _unquote(word: str, text: str) -> str:
    if word.startswith('"') and word.endswith('"') and len(word) > 1:
        return word[1:-1]
    if not word or '"' in word:
        raise EntryError('%r: write the comment as comment "TEXT"' % text)
    return word


def check_comment(comment: str) -> str:
    if '"' in comment or "\n" in comment or len(comment.encode("utf-8")) > COMMENT_MAX:
        raise EntryError("comment %r: ipset allows at most %d bytes and no double quote or newline" % (comment, COMMENT_MAX))
    return comment


# ---------------------------------------------------------------- options


def effective_options(ipset: IpSet) -> Dict[str, str]:
    """The create options as the kernel will report them: maxelem always present, comment implied."""
    options = dict(ipset.options)
    if any(m.comment for m in ipset.members):
        options["comment"] = ""
    options.setdefault("maxelem", str(auto_maxelem(len(ipset.members))))
    return options


def auto_maxelem(count: int) -> int:
    """The default 65536, or the next power of two that holds every member (stable under small changes)."""
    maxelem = DEFAULT_MAXELEM
    while maxelem < count:
        maxelem *= 2
    return maxelem


def compared_options(options: Dict[str, str]) -> Dict[str, str]:
    """The options that make two sets different (hashsize only sizes the table)."""
    return {k: v for k, v in options.items() if k != "hashsize" and k not in KERNEL_CHOSEN}


# ---------------------------------------------------------------- render


def render_create(ipset: IpSet, name: Optional[str] = None) -> str:
    return create_line(name or ipset.name, ipset.type, ipset.family, effective_options(ipset))


def create_line(name: str, set_type: str, family: str, options: Dict[str, str]) -> str:
    words = ["create", name, set_type, "family", family]
    for key in VALUE_OPTIONS:
        if key in options:
            words += [key, options[key]]
    words += [key for key in FLAG_OPTIONS if key in options]
    return " ".join(words)


def render_entry(member: SetMember) -> str:
    """The entry with its flags, as it follows the set name in `ipset save` (and `ipset restore`)."""
    if not (member.nomatch or member.comment):
        return member.entry
    text = member.entry + (" nomatch" if member.nomatch else "")
    return text + (' comment "%s"' % member.comment if member.comment else "")


def set_arguments(ipset: IpSet) -> Dict[str, Any]:
    """The set as netpol.fleet.ipset takes it, each member one string `ENTRY [nomatch] [comment "TEXT"]`:
    Ansible passes (and AnsibleModule deep-copies) one string per member far faster than a dict of three."""
    return {"name": ipset.name, "type": ipset.type, "family": ipset.family,
            "members": [render_entry(m) for m in ipset.members], "options": [list(o) for o in ipset.options]}


def to_saved(ipset: IpSet) -> SavedSet:
    """A compiled set as `ipset save` would print it back (not validated: ipsets.build_set validates)."""
    return SavedSet(ipset.name, ipset.type, ipset.family, tuple(sorted(map(render_entry, ipset.members))),
                    tuple(sorted(effective_options(ipset).items())))


def render_restore(sets: Iterable[IpSet]) -> str:
    """A plain `ipset restore` script that creates and fills the sets (no swap; for fresh hosts and tests)."""
    return render_saved(map(to_saved, sets))


def render_saved(sets: Iterable[SavedSet]) -> str:
    lines: List[str] = []
    for saved in sets:
        lines.append(create_line(saved.name, saved.type, saved.family, dict(saved.options)))
        lines.extend("add %s %s" % (saved.name, entry) for entry in saved.entries)
    return "".join(line + "\n" for line in lines)


# ---------------------------------------------------------------- parse

_TOKEN = re.compile(r'"[^"]*"|\S+')  # ipset forbids " inside comments, so this is exact


Parsed = Dict[str, Tuple[List[str], List[str]]]  # set name -> (create words after the name, add values)


def split_plain(text: str) -> Optional[Parsed]:
    """The layout `ipset save` and netpol_compile write, split in C (one Python step per set, not per
    member): each create line followed by the add lines of that set only. None for any other layout
    (comments, blank lines, another order, errors), which callers read line by line."""
    body = text.rstrip("\n")
    if not body.startswith("create "):
        return None if body else {}
    parsed: Parsed = {}
    for block in body[len("create "):].split("\ncreate "):
        header, _newline, adds = block.partition("\n")
        words = header.split()
        if len(words) < 2 or words[0] in parsed:
            return None
        values = ("\n" + adds).split("\nadd %s " % words[0]) if adds else [""]
        if values[0] or len(values) - 1 != adds.count("\n") + bool(adds):  # a line that is not one of its adds
            return None
        parsed[words[0]] = (words[1:], values[1:])
    return parsed


def parse_save(text: str, wanted: Callable[[str], bool] = lambda name: True) -> Dict[str, SavedSet]:
    """`ipset save` output -> {name: SavedSet} for the wanted names (entries sorted, counters and
    per-member timeouts dropped, kernel-chosen options dropped)."""
    parsed = split_plain(text)
    if parsed is None:  # not what ipset 7 prints; read it line by line rather than fail
        parsed = _save_lines(text)
    saved = {}
    for name, (words, values) in parsed.items():
        if wanted(name) and words:
            family, options = _parse_header(words[1:])
            # Only flagged members (a set's label, nomatch excepts) need reading word by word.
            entries = values if " " not in "".join(values) else [v if " " not in v else _saved_entry(v) for v in values]
            saved[name] = SavedSet(name, words[0], family, tuple(sorted(entries)), options)
    return saved


def _save_lines(text: str) -> Parsed:
    parsed: Parsed = {}
    for line in text.splitlines():
        verb, _space, rest = line.partition(" ")
        name, _space, value = rest.partition(" ")
        if verb == "create":
            parsed[name] = (value.split(), [])
        elif verb == "add" and name in parsed and value:
            parsed[name][1].append(value)
    return parsed


def _saved_entry(value: str) -> str:
    """An add line's value as we compare it: the entry and its flags, counters and timeouts dropped."""
    return value if " " not in value else render_entry(_parse_member(_words(value)))


def _words(text: str) -> List[str]:
    return _TOKEN.findall(text) if '"' in text else text.split()


def _parse_header(words: List[str]) -> Tuple[str, Tuple[Tuple[str, str], ...]]:
    family, options = "inet", {}
    words = list(words)
    while words:
        key = words.pop(0)
        if key in FLAG_OPTIONS:
            options[key] = ""
        elif words:
            value = words.pop(0)
            if key == "family":
                family = value
            else:
                options[key] = value
    return family, tuple(sorted(compared_options(options).items()))


def _parse_member(words: List[str]) -> SetMember:
    entry, nomatch, comment = words[0], False, ""
    rest = iter(words[1:])
    for word in rest:
        if word == "nomatch":
            nomatch = True
        elif word == "comment":
            comment = next(rest, '""').strip('"')
        else:  # timeout, packets, bytes, skbmark, ...: a value follows; none of them is state we own
            next(rest, None)
    return SetMember(entry, nomatch, comment)


def parse_references(text: str) -> Dict[str, int]:
    """`ipset list -t` output -> {name: number of kernel references (iptables rules, list:set)}."""
    references: Dict[str, int] = {}
    name = ""
    for line in text.splitlines():
        key, value = line.partition(":")[::2]
        if key == "Name":
            name = value.strip()
        elif key == "References" and name:
            references[name] = int(value)
    return references
