# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reachability verification: which flows to probe, and how measured and expected compare.

A flow record is the one currency of the verify role, shared with the simulator:
``{src, dst, address, family, protocol, port, reachable}`` (measured records also carry
``detail``: why a probe failed). Pure Python, standard library only, Python 3.9: the
probe and listen modules import it on managed hosts.
"""

from __future__ import annotations

import errno
import ipaddress
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

# SCTP is part of the policy model, but probing it needs kernel SCTP sockets, which many
# hosts (and these test machines) lack: it is checked by the rules, never by traffic.
PROBED_PROTOCOLS = ("tcp", "udp")

Flow = Dict[str, Any]
FlowKey = Tuple[str, str, str, str, int]
PortKey = Tuple[str, int]


def natural_key(name: str) -> List[Any]:
    """Sort key that puts host2 before host10, as operators number their hosts."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def bare_address(address: str) -> str:
    """The canonical text of an address given with or without a /prefix (10.0.0.1/24 -> 10.0.0.1)."""
    return ipaddress.ip_address(str(address).split("/", 1)[0].strip()).compressed


def address_family(address: str) -> int:
    return ipaddress.ip_address(bare_address(address)).version


def port_key(port: Mapping[str, Any]) -> PortKey:
    """(protocol, number) of a `{port, protocol}` entry; protocol defaults to TCP as in Kubernetes."""
    number = int(port["port"])
    if not 1 <= number <= 65535:
        raise ValueError("port %r is out of range 1-65535" % (port["port"],))
    return str(port.get("protocol") or "TCP").lower(), number


def probed_ports(*port_lists: Optional[Iterable[Mapping[str, Any]]]) -> List[PortKey]:
    """The distinct probeable (protocol, port) pairs of several port lists, sorted."""
    keys = {port_key(port) for ports in port_lists for port in ports or ()}
    return sorted(key for key in keys if key[0] in PROBED_PROTOCOLS)


def flow_targets(
    src: str,
    endpoints: Mapping[str, Tuple[Sequence[str], Sequence[Mapping[str, Any]]]],
    extra_ports: Optional[Iterable[Mapping[str, Any]]] = None,
) -> List[Flow]:
    """Every flow `src` must probe: each other host's addresses times its declared ports.

    `endpoints` maps a host name to (addresses, ports). Records lack `reachable`: the probe adds it.
    """
    extra = list(extra_ports or ())
    return [
        {"src": src, "dst": dst, "address": bare_address(address), "family": address_family(address),
         "protocol": protocol, "port": port}
        for dst in sorted(endpoints, key=natural_key)
        if dst != src
        for address in endpoints[dst][0]
        for protocol, port in probed_ports(endpoints[dst][1], extra)
    ]


def as_bool(value: Any) -> bool:
    """A reachable flag as YAML, JSON or a template may spell it."""
    if isinstance(value, str):
        if value.strip().lower() not in ("true", "false", "yes", "no", "1", "0"):
            raise ValueError("reachable must be a boolean, got %r" % value)
        return value.strip().lower() in ("true", "yes", "1")
    return bool(value)


def flow_key(flow: Mapping[str, Any]) -> FlowKey:
    """What identifies a flow; the family follows from the address."""
    return (str(flow["src"]), str(flow["dst"]), bare_address(flow["address"]),
            str(flow["protocol"]).lower(), int(flow["port"]))


def _index(flows: Iterable[Mapping[str, Any]]) -> Dict[FlowKey, Mapping[str, Any]]:
    return {flow_key(flow): flow for flow in flows}


def compare_flows(measured: Iterable[Mapping[str, Any]], expected: Iterable[Mapping[str, Any]]) -> Dict[str, Any]:
    """Mismatches between measured and expected flows, and what could not be compared.

    Only flows in both lists are judged: `unexpected` counts measured flows the expectation
    does not mention, `unmeasured` expected flows nobody probed (e.g. hosts outside the play).
    """
    seen, wanted = _index(measured), _index(expected)
    mismatches = [
        dict(seen[key], expected=as_bool(wanted[key]["reachable"]), measured=as_bool(seen[key]["reachable"]))
        for key in sorted(seen.keys() & wanted.keys())
        if as_bool(seen[key]["reachable"]) != as_bool(wanted[key]["reachable"])
    ]
    return {
        "checked": len(seen.keys() & wanted.keys()),
        "mismatches": mismatches,
        "unexpected": len(seen.keys() - wanted.keys()),
        "unmeasured": len(wanted.keys() - seen.keys()),
    }


def _verdict(reachable: bool, detail: str = "") -> str:
    if reachable:
        return "reachable"
    return "blocked (%s)" % detail if detail else "blocked"


def format_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns padded to their widest cell, so a terminal shows a readable grid."""
    grid = [list(header)] + [list(row) for row in rows]
    widths = [max(len(row[col]) for row in grid) for col in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in grid)


def mismatch_table(mismatches: Iterable[Mapping[str, Any]]) -> str:
    """One aligned line per mismatch: src, dst, address, proto/port, family, expected, measured."""
    header = ("SRC", "DST", "ADDRESS", "PROTO/PORT", "FAMILY", "EXPECTED", "MEASURED")
    return format_table(header, (
        (str(m["src"]), str(m["dst"]), str(m["address"]), "%s/%s" % (m["protocol"], m["port"]),
         "IPv%s" % m["family"], _verdict(as_bool(m["expected"])),
         _verdict(as_bool(m["measured"]), str(m.get("detail") or "")))
        for m in mismatches
    ))


def matrix_summary(measured: Iterable[Mapping[str, Any]]) -> str:
    """A source x destination grid of reachable/probed counts: the matrix at a glance."""
    counts: Dict[Tuple[str, str], List[int]] = {}
    for flow in measured:
        cell = counts.setdefault((str(flow["src"]), str(flow["dst"])), [0, 0])
        cell[0] += as_bool(flow["reachable"])
        cell[1] += 1
    sources = sorted({pair[0] for pair in counts}, key=natural_key)
    targets = sorted({pair[1] for pair in counts}, key=natural_key)
    rows = (
        [src] + ["%d/%d" % tuple(counts[(src, dst)]) if (src, dst) in counts else "-" for dst in targets]
        for src in sources
    )
    return format_table(["SRC \\ DST"] + targets, rows)


# Why a probe failed, in the words an operator uses. A DROP shows as a timeout; a REJECT as
# refused, host unreachable or prohibited (by its --reject-with); a missing listener as refused;
# a DROP in this host's own OUTPUT as denied (UDP) or a timeout (TCP retries until it gives up).
FAILURES = {
    errno.ECONNREFUSED: "refused",
    errno.ETIMEDOUT: "timeout",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.EPERM: "denied by the local firewall",
    errno.EACCES: "prohibited",  # an ICMPv6 administratively-prohibited answer
    errno.EADDRNOTAVAIL: "no source address",
}


def failure_detail(code: Optional[int]) -> str:
    if code in FAILURES:
        return FAILURES[code]
    return errno.errorcode.get(code, "error %s" % code).lower() if code is not None else "error"


def parse_target(target: Mapping[str, Any]) -> Flow:
    """A probe target with a canonical address, its family and a lower-case, probeable protocol."""
    if "address" not in target or "port" not in target:
        raise ValueError("a target needs address and port: %r" % (dict(target),))
    protocol, port = port_key(target)
    if protocol not in PROBED_PROTOCOLS:
        raise ValueError("cannot probe %s (only tcp and udp): %r" % (protocol, dict(target)))
    address = bare_address(target["address"])
    return dict(target, address=address, family=address_family(address), protocol=protocol, port=port)
