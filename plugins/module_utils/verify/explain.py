# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Explain one flow: the simulator's verdict per family and side, in words and as kernel rules.

An explanation record is plain data (it travels through Ansible):
``{src, dst, src_address, address, family, protocol, port, reachable, egress, ingress}``, each
side ``{direction, allowed, reason, host, workload, isolated_by, decided_by, kernel}`` where
``kernel`` is the list of rule comments the compiled rules carry for what decided (empty: no rule
of ours decides, the packet falls through our chains) or None when no host of ours enforces that
side. The comments are compile's own (names.comment text), so a hit counter of the kernel can be
compared with the simulator's verdict rule for rule. Controller side: imports the engine.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import CHAIN_PREFIX, COMMENT_MAX
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import CompileOptions, Fleet, Policy, Workload
from ansible_collections.netpol.fleet.plugins.module_utils.engine.names import clamp
from ansible_collections.netpol.fleet.plugins.module_utils.engine.simulate import Side, Simulator
from ansible_collections.netpol.fleet.plugins.module_utils.iptables.text import rule_target

FAMILIES = (4, 6)
PROTOCOLS = ("TCP", "UDP", "SCTP")


class ExplainError(ValueError):
    """A flow that cannot be explained (unknown endpoint, bad port): the message says which field."""


@dataclass(frozen=True)
class Node:
    """An endpoint that is no workload: an inventory host's own addresses, or one address."""

    name: str
    addresses: Tuple[str, ...]


Endpoint = Union[Workload, Node]


def explain(fleet: Fleet, policies: Sequence[Policy], src: str, dst: str, port: Any,
            protocol: str = "TCP", options: CompileOptions = CompileOptions()) -> List[Dict[str, Any]]:
    """One record per family both endpoints have: the verdict of each side and what decided it."""
    number, proto = _port(port), _protocol(protocol)
    source, destination = endpoint(fleet, src, "src"), endpoint(fleet, dst, "dst")
    simulator = Simulator(fleet, policies, options)
    records = []
    for family in FAMILIES:
        src_address, dst_address = _address(source, family), _address(destination, family)
        if not src_address or not dst_address:
            continue
        result = simulator.verdict(_simulated(source, src_address), _simulated(destination, dst_address),
                                   number, proto, family)
        records.append({
            "src": _name(source), "dst": _name(destination), "src_address": src_address, "address": dst_address,
            "family": family, "protocol": proto.lower(), "port": number, "reachable": result.allowed,
            "egress": side_record(result.egress, source),
            "ingress": side_record(result.ingress, destination),
        })
    if not records:
        raise ExplainError("src %s and dst %s share no address family (IPv4 or IPv6)" % (src, dst))
    return records


def endpoint(fleet: Fleet, name: str, field: str) -> Endpoint:
    """A workload (by namespace/name or name), an inventory host's own address, or an address."""
    text = str(name or "").strip()
    for workload in fleet.workloads:
        if text in (workload.name, "%s/%s" % (workload.namespace, workload.name)):
            return workload
    node = dict(fleet.node_addresses).get(text)
    if node:
        return Node(text, tuple(node))
    try:
        address = ipaddress.ip_address(text.split("/", 1)[0]).compressed
        return Node(address, (address,))
    except ValueError:
        raise ExplainError("%s=%r is no workload, inventory host with addresses, or IP address" % (field, name))


def side_record(side: Side, local: Endpoint) -> Dict[str, Any]:
    workload = local if isinstance(local, Workload) else None
    return {
        "direction": side.direction,
        "allowed": side.allowed,
        "reason": side.reason,
        "host": workload.enforcer if workload else None,
        "workload": "%s/%s" % (workload.namespace, workload.name) if workload else None,
        "isolated_by": list(side.isolated_by),
        "decided_by": list(side.allowed_by) if side.allowed else ["%s/%s isolated for %s" % (
            workload.namespace, workload.name, side.direction)] if workload else [],
        "kernel": kernel_comments(side, workload),
    }


def kernel_comments(side: Side, workload: Optional[Workload]) -> Optional[List[str]]:
    """The comments of the rules that decide this side in the compiled chains, as the kernel keeps them.

    [] when no rule of ours decides (not isolated: the packet returns to the base chain at the
    end of ours); None when nothing of ours sees the packet (outside the fleet, node-local).
    """
    if workload is None or side.reason == "node-local":
        return None
    if side.allowed and not side.allowed_by:
        return []
    drop = "%s/%s isolated for %s" % (workload.namespace, workload.name, side.direction)
    texts = side.allowed_by if side.allowed else (drop,)
    return [clamp(text, COMMENT_MAX - 1) for text in texts]


def _simulated(end: Endpoint, address: str) -> Union[Workload, str]:
    """What the simulator takes: the workload itself, or the address (which it places by owner)."""
    return end if isinstance(end, Workload) else address


def _address(end: Endpoint, family: int) -> str:
    addresses = end.addresses_of(family) if isinstance(end, Workload) else end.addresses
    found = [a.split("/", 1)[0] for a in addresses if (":" in a) == (family == 6)]
    return found[0] if found else ""


def _name(end: Endpoint) -> str:
    if isinstance(end, Workload):
        return end.enforcer if end.name == end.enforcer else "%s/%s" % (end.namespace, end.name)
    return end.name


def _port(port: Any) -> int:
    try:
        number = int(str(port).strip())
    except ValueError:
        raise ExplainError("port=%r is not a number" % (port,))
    if not 1 <= number <= 65535:
        raise ExplainError("port=%r is out of range 1-65535" % (port,))
    return number


def _protocol(protocol: Any) -> str:
    proto = str(protocol or "TCP").strip().upper()
    if proto not in PROTOCOLS:
        raise ExplainError("protocol=%r is not one of TCP, UDP, SCTP" % (protocol,))
    return proto


# ---- words ----------------------------------------------------------------------------------------


def verdict_word(allowed: bool) -> str:
    return "allowed" if allowed else "DENIED"


def side_line(side: Dict[str, Any]) -> str:
    """`egress  at lab-web1 (shop/lab-web1): allowed, not isolated for egress`."""
    where = "at %s (%s)" % (side["host"], side["workload"]) if side["host"] else "(not ours)"
    return "%-7s %s: %s, %s" % (side["direction"], where, verdict_word(side["allowed"]), side["reason"])


def explain_lines(record: Dict[str, Any]) -> List[str]:
    """The simulator's verdict of one record, one line per side."""
    return [
        "IPv%d %s -> %s %s/%s: %s" % (record["family"], record["src_address"], record["address"],
                                      record["protocol"], record["port"], verdict_word(record["reachable"])),
        "  " + side_line(record["egress"]),
        "  " + side_line(record["ingress"]),
    ]


def explain_text(records: Sequence[Mapping[str, Any]]) -> str:
    """The explanation of every family; with `measured` (see measure()), the kernel's side by side."""
    if not records:
        return ""
    head = "%s -> %s %s/%s" % (records[0]["src"], records[0]["dst"], records[0]["protocol"], records[0]["port"])
    lines = [head]
    for record in records:
        lines += explain_lines(record) + (measured_lines(record) if "measured" in record else [])
    return "\n".join(lines)


def rule_comment(rule: str) -> str:
    """The --comment text of a rule as iptables-save prints it ("" when it has none)."""
    try:
        words = shlex.split(rule)
    except ValueError:
        return ""
    return next((words[i + 1] for i, word in enumerate(words[:-1]) if word == "--comment"), "")


def explained_matrix(fleet: Fleet, policies: Sequence[Policy], probes: Sequence[Dict[str, Any]],
                     options: CompileOptions = CompileOptions()) -> List[Dict[str, Any]]:
    """simulate.matrix's records for the given probes, each with `why`: one line per side."""
    simulator = Simulator(fleet, policies, options)
    by_host = {w.enforcer: w for w in fleet.workloads if w.interface is None}  # a host's own workload, not its VMs
    records = []
    for probe in probes:
        src, dst = by_host.get(probe["src"]), by_host.get(probe["dst"])
        result = simulator.verdict(src or probe.get("src_address") or probe["src"], probe["address"],
                                   int(probe["port"]), probe["protocol"], int(probe["family"]))
        why = [side_line(side_record(result.egress, src or Node(probe["src"], ()))),
               side_line(side_record(result.ingress, dst or Node(probe["dst"], ())))]
        records.append(dict(probe, reachable=result.allowed, why=why))
    return records


# ---- measured: a real probe and the hit counters it moved -------------------------------------------

ESTABLISHED = "RELATED,ESTABLISHED"
DIRECTION_CHAINS = {"ingress": CHAIN_PREFIX + "I", "egress": CHAIN_PREFIX + "E"}  # NETPOL-INGRESS, NETPOL-I-...
TERMINAL = ("RETURN", "DROP", "REJECT", "ACCEPT")


def moved_rules(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]], family: int,
                direction: str, protocol: str) -> List[Dict[str, Any]]:
    """Our terminal rules of one direction whose packet counter grew, as {label, rule, chain, packets, target}.

    Left out: jumps between our chains (the path, not the decision), the RELATED,ESTABLISHED return
    (replies and later packets of the probe's connection), and rules of another protocol (neighbour
    discovery and the like that happened meanwhile).
    """
    seen = {_counter_key(r): int(r["packets"]) for r in before}
    moved = []
    for rule in after:
        if int(rule["family"]) != family or not str(rule["chain"]).startswith(DIRECTION_CHAINS[direction]):
            continue
        grown = int(rule["packets"]) - seen.get(_counter_key(rule), 0)
        target = rule_target(str(rule["rule"]))
        if grown <= 0 or target not in TERMINAL or ESTABLISHED in rule["rule"] or not _same_protocol(rule, protocol):
            continue
        moved.append({"label": rule_comment(str(rule["rule"])) or str(rule["rule"]), "rule": rule["rule"],
                      "chain": rule["chain"], "packets": grown, "target": target})
    return moved


def measured_side(side: Mapping[str, Any], counters: Optional[Mapping[str, Any]], family: int,
                  protocol: str) -> Dict[str, Any]:
    """What the kernel decided on one side, and whether that is the rule the simulator named."""
    if counters is None or side["kernel"] is None:
        return {"host": None, "matched": [], "agree": None}
    matched = moved_rules(counters["before"], counters["after"], family, side["direction"], protocol)
    labels = {m["label"] for m in matched}
    agree = not labels if not side["kernel"] else bool(labels) and labels <= set(side["kernel"])
    return {"host": counters["host"], "matched": matched, "agree": agree}


def measure(records: Sequence[Mapping[str, Any]], probes: Sequence[Mapping[str, Any]],
            counters: Mapping[str, Optional[Mapping[str, Any]]]) -> List[Dict[str, Any]]:
    """Each record with `measured`: the probe's outcome and per side the rules the kernel matched.

    counters: {"src": {host, before, after} or None, "dst": ...}, the netpol_counters rules of
    the source's host (egress) and the destination's host (ingress).
    """
    by_address = {(str(p["address"]), int(p["family"])): p for p in probes}
    measured = []
    for record in records:
        probe = by_address.get((record["address"], record["family"]))
        measured.append(dict(record, measured={
            "reachable": None if probe is None else bool(probe["reachable"]),
            "detail": "" if probe is None else str(probe.get("detail") or ""),
            "egress": measured_side(record["egress"], counters.get("src"), record["family"], record["protocol"]),
            "ingress": measured_side(record["ingress"], counters.get("dst"), record["family"], record["protocol"]),
        }))
    return measured


def measured_lines(record: Mapping[str, Any]) -> List[str]:
    measured = record["measured"]
    if measured["reachable"] is None:
        lines = ["  probe:  not sent"]
    else:
        outcome = "reachable (%s)" % measured["detail"] if measured["reachable"] else "blocked (%s)" % measured["detail"]
        agrees = "as expected" if measured["reachable"] == record["reachable"] else "NOT AS EXPECTED"
        lines = ["  probe:  %s, %s" % (outcome, agrees)]
    for direction in ("egress", "ingress"):
        lines.append("  kernel %s" % _kernel_line(record[direction], measured[direction]))
    return lines


def _kernel_line(side: Mapping[str, Any], measured: Mapping[str, Any]) -> str:
    where = "%-7s at %s" % (side["direction"], measured["host"] or side["host"] or "-")
    if measured["agree"] is None:
        why = "not read (no host of ours enforces this side)" if side["kernel"] is None else "counters not read"
        return "%s: %s" % (where, why)
    if measured["matched"]:
        hits = ", ".join('%s "%s" (%d packets)' % (m["target"], m["label"], m["packets"]) for m in measured["matched"])
    else:
        hits = "no rule of ours decided (the packet passed through our chains)"
    expected = ", ".join('"%s"' % k for k in side["kernel"]) or "no rule of ours"
    return "%s: %s; %s" % (where, hits, "as expected" if measured["agree"] else "EXPECTED " + expected)


def _counter_key(rule: Mapping[str, Any]) -> Tuple[int, str, int, str]:
    return int(rule["family"]), str(rule["chain"]), int(rule["index"]), str(rule["rule"])


def _same_protocol(rule: Mapping[str, Any], protocol: str) -> bool:
    words = str(rule["rule"]).split()
    given = [words[i + 1] for i, word in enumerate(words[:-1]) if word == "-p"]
    return not given or given[0].lower() == protocol.lower()
