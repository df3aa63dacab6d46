# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An ebtables rule spec rewritten the way ebtables-nft 1.8.9 prints it in ebtables-save.

Desired and actual rules compare as text, and ebtables-save does not print what it was given:
MACs lose their case (and, in --among, their leading zeros), protocol numbers become names,
options come out in each extension's own order, limits gain their burst, NFLOG its group. The
forms below were learned by round-tripping rules through the real ebtables (the kernel test
tests/integration/test_ebtables_canonical.py holds them). What is not known here passes through
unchanged; the backend then proves the form in a scratch network namespace before applying.

Standard library only, Python 3.9: modules import this on managed hosts.
"""

from __future__ import annotations

import ipaddress
import shlex
from fractions import Fraction
from typing import Callable, Dict, List, Optional, Sequence, Tuple

# Options of the ebtables core, printed in this order before any extension.
BASE_ORDER = ("-p", "-s", "-d", "-i", "--logical-in", "-o", "--logical-out")
BASE_ALIASES = {
    "--protocol": "-p", "--proto": "-p", "--source": "-s", "--src": "-s", "--destination": "-d",
    "--dst": "-d", "--in-interface": "-i", "--in-if": "-i", "--out-interface": "-o", "--out-if": "-o",
    "--logical-out": "--logical-out", "--logical-in": "--logical-in",
}
TARGET_OPTIONS = ("-j", "--jump")

# Each extension's options in the order ebtables-save prints them; aliases map to those names.
EXTENSIONS: Dict[str, Tuple[str, ...]] = {
    "ip": ("--ip-src", "--ip-dst", "--ip-tos", "--ip-proto", "--ip-sport", "--ip-dport", "--ip-icmp-type"),
    "ip6": ("--ip6-src", "--ip6-dst", "--ip6-tclass", "--ip6-proto", "--ip6-sport", "--ip6-dport",
            "--ip6-icmp-type"),
    "arp": ("--arp-op", "--arp-htype", "--arp-ptype", "--arp-ip-src", "--arp-ip-dst", "--arp-mac-src",
            "--arp-mac-dst", "--arp-gratuitous"),
    "vlan": ("--vlan-id", "--vlan-prio", "--vlan-encap"),
    "among": ("--among-dst", "--among-src"),
    "limit": ("--limit", "--limit-burst"),
    "nflog": ("--nflog-prefix", "--nflog-group", "--nflog-range", "--nflog-threshold"),
    "log": ("--log-level", "--log-prefix", "--log-ip", "--log-arp", "--log-ip6"),
    "pkttype": ("--pkttype-type",),
}
ALIASES = {
    "--ip-source": "--ip-src", "--ip-destination": "--ip-dst", "--ip-protocol": "--ip-proto",
    "--ip-source-port": "--ip-sport", "--ip-destination-port": "--ip-dport",
    "--ip6-source": "--ip6-src", "--ip6-destination": "--ip6-dst", "--ip6-protocol": "--ip6-proto",
    "--ip6-source-port": "--ip6-sport", "--ip6-destination-port": "--ip6-dport",
    "--arp-opcode": "--arp-op", "--arp-ip-source": "--arp-ip-src", "--arp-ip-destination": "--arp-ip-dst",
    "--arp-mac-source": "--arp-mac-src", "--arp-mac-destination": "--arp-mac-dst",
    "--nflog": "--nflog-group",
    "--log": "--log-level",
}
FLAGS = {"--arp-gratuitous", "--log-ip", "--log-arp", "--log-ip6"}  # options without a value
EXTENSION_OF = {option: name for name, options in EXTENSIONS.items() for option in options}

# The ebtables-nft built-in ethertype names (the ones /etc/ethertypes of netbase also gives).
ETHERTYPES = {
    0x0800: "IPv4", 0x0806: "ARP", 0x8035: "RARP", 0x8100: "802_1Q", 0x86DD: "IPv6", 0x88A8: "S-TAG",
    0x0805: "X25", 0x8137: "IPX", 0x88CC: "LLDP", 0x888E: "EAPOL", 0x8847: "MPLS", 0x8848: "MPLS_MULTI",
    0x8863: "PPP_DISC", 0x8864: "PPP_SES",
}
ETHERTYPE_NAMES = {name.lower(): name for name in ETHERTYPES.values()}
ETHERTYPE_NAMES.update({"length": "Length", "ip": "IPv4", "ip4": "IPv4", "ip6": "IPv6", "ether-arp": "ARP",
                        "8021q": "802_1Q", "1q": "802_1Q", "802.1q": "802_1Q", "dot1q": "802_1Q"})
MAC_NAMES = {
    "ff:ff:ff:ff:ff:ff": "Broadcast",
    "01:00:00:00:00:00/01:00:00:00:00:00": "Multicast",
    "00:00:00:00:00:00/01:00:00:00:00:00": "Unicast",
    "01:80:c2:00:00:00": "BGA",
}
MAC_NAME_CASE = {name.lower(): name for name in MAC_NAMES.values()}
ARP_OPS = {1: "Request", 2: "Reply", 3: "Request_Reverse", 4: "Reply_Reverse", 5: "DRARP_Request",
           6: "DRARP_Reply", 7: "DRARP_Error", 8: "InARP_Request", 9: "InARP_Reply", 10: "ARP_NAK"}
ARP_OP_NAMES = {name.lower(): name for name in ARP_OPS.values()}
IP_PROTOCOLS = {1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 51: "ah", 58: "ipv6-icmp",
                132: "sctp", 136: "udplite"}
IP_PROTOCOL_NAMES = dict({name: name for name in IP_PROTOCOLS.values()}, **{"icmpv6": "ipv6-icmp"})
ICMP6_TYPES = {1: "destination-unreachable", 2: "packet-too-big", 3: "time-exceeded", 4: "parameter-problem",
               128: "echo-request", 129: "echo-reply", 133: "router-solicitation",
               134: "router-advertisement", 135: "neighbour-solicitation", 136: "neighbour-advertisement",
               137: "redirect"}
ICMP_TYPES = {0: "echo-reply", 3: "destination-unreachable", 5: "redirect", 8: "echo-request",
              11: "time-exceeded", 12: "parameter-problem"}
LOG_LEVELS = ("emerg", "alert", "crit", "error", "warning", "notice", "info", "debug")
RATE_UNITS = (("sec", 1), ("min", 60), ("hour", 3600), ("day", 86400))
RATE_UNIT_NAMES = {"s": "sec", "sec": "sec", "second": "sec", "m": "min", "min": "min", "minute": "min",
                   "h": "hour", "hour": "hour", "d": "day", "day": "day"}
DEFAULT_LIMIT_BURST = "5"
DEFAULT_NFLOG_GROUP = "1"


class RuleSyntaxError(ValueError):
    """A rule spec that cannot be read as ebtables options (unbalanced quotes, a missing value)."""


Option = Tuple[str, bool, Optional[str]]  # (name, negated, value)


def canonical(spec: str) -> str:
    """`spec` as ebtables-save prints it, as far as the forms above reach."""
    base: Dict[str, Option] = {}
    groups: Dict[str, List[Option]] = {}  # extension -> options, in order of first appearance
    target: List[str] = []
    for option in _options(_split(spec)):
        name = option[0]
        if name in TARGET_OPTIONS:
            target = ["-j", option[2] or ""] + target[2:]
        elif name in BASE_ORDER:
            base[name] = option
        elif target and name not in EXTENSION_OF:
            target += _render(option)  # an option of the target (e.g. --mark-set) follows it
        else:
            groups.setdefault(EXTENSION_OF.get(name, name), []).append(option)
    words: List[str] = []
    for name in BASE_ORDER:
        if name in base:
            words += _render(_normal(base[name]))
    for extension, options in groups.items():
        words += _extension(extension, options)
    return " ".join(words + target)


def _split(spec: str) -> List[str]:
    try:
        return shlex.split(spec)
    except ValueError as e:
        raise RuleSyntaxError("cannot read %r: %s" % (spec, e))


def _options(tokens: Sequence[str]) -> List[Option]:
    """(name, negated, value) per option; both `! -s X` and `-s ! X` mean a negated -s."""
    options: List[Option] = []
    negate, i = False, 0
    while i < len(tokens):
        token = tokens[i]
        if token == "!":
            negate, i = True, i + 1
            continue
        if not token.startswith("-"):
            raise RuleSyntaxError("unexpected word %r (an option starts with -)" % token)
        name = BASE_ALIASES.get(token, ALIASES.get(token, token))
        value, i = None, i + 1
        if token not in FLAGS and token != "--nflog" and token != "--log":
            if i < len(tokens) and tokens[i] == "!":
                negate, i = True, i + 1
            if i >= len(tokens):
                raise RuleSyntaxError("option %s needs a value" % token)
            value, i = tokens[i], i + 1
        options.append((name, negate, value))
        negate = False
    return options


def _render(option: Option) -> List[str]:
    name, negated, value = option
    words = [name] + (["!"] if negated else [])
    if value is None:
        return words
    if name in ("--nflog-prefix", "--log-prefix"):
        return words + ['"%s"' % value]
    return words + [value]


def _extension(extension: str, options: List[Option]) -> List[str]:
    by_name = {o[0]: _normal(o) for o in options}
    if extension == "limit":
        by_name.setdefault("--limit-burst", ("--limit-burst", False, DEFAULT_LIMIT_BURST))
    elif extension == "nflog":
        _nflog_defaults(by_name)
    elif extension == "log" and by_name.get("--log-level", ("", False, None))[2] is None:
        by_name["--log-level"] = ("--log-level", False, "notice")  # --log alone, or no level
    elif extension == "vlan" and by_name.get("--vlan-prio", ("", False, ""))[2] == "0":
        del by_name["--vlan-prio"]  # the default, not printed
    order = EXTENSIONS.get(extension, tuple(by_name))
    words: List[str] = []
    for name in order:
        if name in by_name:
            words += _render(by_name[name])
    return words


def _nflog_defaults(by_name: Dict[str, Option]) -> None:
    by_name["--nflog-group"] = by_name.get("--nflog-group") or ("--nflog-group", False, DEFAULT_NFLOG_GROUP)
    if by_name["--nflog-group"][2] is None:
        by_name["--nflog-group"] = ("--nflog-group", False, DEFAULT_NFLOG_GROUP)
    if by_name.get("--nflog-prefix", ("", False, "x"))[2] == "":
        del by_name["--nflog-prefix"]  # an empty prefix is no prefix
    if by_name.get("--nflog-threshold", ("", False, ""))[2] == "1":
        del by_name["--nflog-threshold"]  # the default, not printed


def _normal(option: Option) -> Option:
    name, negated, value = option
    normalize = NORMALIZERS.get(name)
    if value is None or normalize is None:
        return option
    return name, negated, normalize(value)


def _mac(value: str) -> str:
    """A MAC (with optional /mask) as -s/-d and --arp-mac-* print it: two lowercase hex digits each."""
    if value.lower() in MAC_NAME_CASE:
        return MAC_NAME_CASE[value.lower()]
    address, mask = (value.split("/", 1) + [""])[:2]
    octets, mask_octets = _octets(address), _octets(mask) if mask else [0xFF] * 6
    if octets is None or mask_octets is None:
        return value
    text = ":".join("%02x" % (a & m) for a, m in zip(octets, mask_octets))
    if mask_octets != [0xFF] * 6:
        text += "/" + ":".join("%02x" % m for m in mask_octets)
    return MAC_NAMES.get(text, text)


def _octets(mac: str) -> Optional[List[int]]:
    parts = mac.split(":")
    try:
        octets = [int(p, 16) for p in parts]
    except ValueError:
        return None
    return octets if len(octets) == 6 and all(0 <= o <= 0xFF for o in octets) and all(parts) else None


def _among(value: str) -> str:
    """--among-src/dst lists print sorted, deduplicated, MACs without leading zeros."""
    entries = set()
    for entry in value.split(","):
        mac, sep, ip = entry.partition("=")
        octets = _octets(mac)
        if octets is None:
            return value
        entries.add((tuple(octets), ipaddress.IPv4Address(ip) if sep else None))
    ordered = sorted(entries, key=lambda e: (e[0], e[1] is not None, e[1] or ipaddress.IPv4Address(0)))
    return ",".join(
        ":".join("%x" % o for o in mac) + ("=%s" % ip if ip is not None else "") for mac, ip in ordered
    )


def _ethertype(value: str) -> str:
    if value.lower() in ETHERTYPE_NAMES:
        return ETHERTYPE_NAMES[value.lower()]
    try:
        number = int(value, 16)
    except ValueError:
        return value
    if number == 0x0600:
        return "Length"
    return ETHERTYPES.get(number, "0x%04x" % number)


def _network(value: str) -> str:
    """An address or network: host bits cleared, dotted masks as prefixes, a full prefix left off."""
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return value
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def _protocol(value: str) -> str:
    if value.isdigit():
        return IP_PROTOCOLS.get(int(value), value)
    return IP_PROTOCOL_NAMES.get(value.lower(), value.lower())


def _icmp_type(names: Dict[int, str]) -> Callable[[str], str]:
    numbers = {name: number for number, name in names.items()}
    numbers.update({n.replace("neighbour", "neighbor"): v for n, v in numbers.items()})

    def normalize(value: str) -> str:
        if value in numbers:
            return names[numbers[value]]
        types, codes = (value.split("/", 1) + [""])[:2]
        if not types.replace(":", "").isdigit() or (codes and not codes.replace(":", "").isdigit()):
            return value
        codes = codes or "0:255"
        if codes == "0:255" and types.isdigit() and int(types) in names:
            return names[int(types)]
        return "%s/%s" % (types, codes)

    return normalize


def _arp_op(value: str) -> str:
    if value.isdigit():
        return ARP_OPS.get(int(value), value)
    return ARP_OP_NAMES.get(value.lower(), value)


def _arp_ptype(value: str) -> str:
    name = _ethertype(value)
    number = next((n for n, v in ETHERTYPES.items() if v == name), None)
    return "0x%x" % number if number is not None else value


def _vlan_encap(value: str) -> str:
    name = _ethertype(value)
    number = next((n for n, v in ETHERTYPES.items() if v == name), None)
    return "%04X" % number if number is not None else value  # ebtables-nft prints 86DD


def _rate(value: str) -> str:
    """--limit N/unit in the largest unit that keeps N whole (60/min is 1/sec)."""
    count, unit = (value.split("/", 1) + [""])[:2]
    unit = RATE_UNIT_NAMES.get(unit.lower() or "sec")
    if not count.isdigit() or unit is None:
        return value
    per_second = Fraction(int(count), dict(RATE_UNITS)[unit])
    for name, seconds in RATE_UNITS:
        scaled = per_second * seconds
        if scaled.denominator == 1:
            return "%d/%s" % (scaled.numerator, name)
    return value


def _log_level(value: str) -> str:
    if value.isdigit() and int(value) < len(LOG_LEVELS):
        return LOG_LEVELS[int(value)]
    return value.lower()


NORMALIZERS: Dict[str, Callable[[str], str]] = {
    "-p": _ethertype,
    "-s": _mac,
    "-d": _mac,
    "--arp-mac-src": _mac,
    "--arp-mac-dst": _mac,
    "--among-src": _among,
    "--among-dst": _among,
    "--ip-src": _network,
    "--ip-dst": _network,
    "--ip6-src": _network,
    "--ip6-dst": _network,
    "--arp-ip-src": _network,
    "--arp-ip-dst": _network,
    "--ip-proto": _protocol,
    "--ip6-proto": _protocol,
    "--ip-icmp-type": _icmp_type(ICMP_TYPES),
    "--ip6-icmp-type": _icmp_type(ICMP6_TYPES),
    "--arp-op": _arp_op,
    "--arp-ptype": _arp_ptype,
    "--vlan-encap": _vlan_encap,
    "--limit": _rate,
    "--log-level": _log_level,
}
