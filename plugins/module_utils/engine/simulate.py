# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Simulate and explain: NetworkPolicy semantics evaluated straight from the IR.

Independent of compile (no sets, no chains, no port plans): it is the oracle the compiled
rules are tested against and what measured traffic is compared with. Who a selector means
comes from selectors.Resolver, as in compile and the lookup, so they never disagree. A flow
needs egress allowed at its source and ingress allowed at its destination; each side
names what decided it. Pure Python, standard library only.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import (
    EGRESS,
    INGRESS,
    CompileOptions,
    Fleet,
    Peer,
    Policy,
    PortSpec,
    PrivilegedRule,
    Rule,
    Workload,
)
from ansible_collections.netpol.fleet.plugins.module_utils.engine.selectors import Resolver

Endpoint = Union[Workload, str]


@dataclass(frozen=True)
class Side:
    """One side's decision: egress at the source or ingress at the destination."""

    direction: str  # ingress or egress
    allowed: bool
    reason: str
    isolated_by: Tuple[str, ...] = ()  # policy keys
    allowed_by: Tuple[str, ...] = ()  # "ns/policy ingress[0]" or "privileged <name>"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    egress: Side
    ingress: Side

    @property
    def reasons(self) -> Tuple[str, ...]:
        return ("egress: " + self.egress.reason, "ingress: " + self.ingress.reason)


@dataclass(frozen=True)
class _End:
    """A flow endpoint: the workload (if the address is one) and the address used."""

    workload: Optional[Workload]
    address: str


def verdict(
    fleet: Fleet,
    policies: Sequence[Policy],
    src: Endpoint,
    dst: Endpoint,
    port: int,
    protocol: str = "TCP",
    family: int = 4,
    options: CompileOptions = CompileOptions(),
) -> Verdict:
    """Whether a new connection src -> dst:port/protocol is allowed, and why."""
    return Simulator(fleet, policies, options).verdict(src, dst, port, protocol, family)


def matrix(
    fleet: Fleet,
    policies: Sequence[Policy],
    probes: Optional[Iterable[Mapping[str, Any]]] = None,
    options: CompileOptions = CompileOptions(),
    hosts: Optional[Iterable[str]] = None,
    ports: Optional[Iterable[Tuple[str, int]]] = None,
) -> List[Dict[str, Any]]:
    """Flow records {src, dst, address, family, protocol, port, reachable}.

    Without probes: every ordered pair of distinct workloads (of `hosts`, if given), every
    family both have, every TCP/UDP port the destination declares (netpol_ports) or, if
    given, every (protocol, port) of `ports`. With probes (records without 'reachable',
    src/dst as host names, optional src_address), exactly those, filled in.
    """
    simulator = Simulator(fleet, policies, options)
    by_host = {w.enforcer: w for w in fleet.workloads if w.interface is None}  # a host's own workload, no VM
    if probes is None:
        wanted = None if hosts is None else set(hosts)
        workloads = [w for w in fleet.workloads if wanted is None or w.enforcer in wanted]
        records = _all_probes(workloads, None if ports is None else [(p.lower(), n) for p, n in ports])
    else:
        records = [dict(p) for p in probes]
    for record in records:
        src = by_host.get(record["src"], record.get("src_address") or record["src"])
        result = simulator.verdict(src, record["address"], int(record["port"]), record["protocol"], int(record["family"]))
        record["reachable"] = result.allowed
    return records


class Simulator:
    """The fleet and policies, looked up by address and by target once; verdicts per flow."""

    def __init__(self, fleet: Fleet, policies: Sequence[Policy], options: CompileOptions = CompileOptions()):
        self.options = options
        self.policies = sorted(policies, key=lambda p: p.key)
        self.owners = {_ip(a): w for w in fleet.workloads for a in w.addresses}
        self.resolver = Resolver(fleet)
        self.node_addresses = {host: {_ip(a) for a in addresses} for host, addresses in fleet.node_addresses}
        self._isolating: Dict[Tuple[int, str], List[Policy]] = {}

    def verdict(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP", family: int = 4) -> Verdict:
        source, destination = self._end(src, family), self._end(dst, family)
        if self._node_local(source, destination):
            return Verdict(True, Side("egress", True, "node-local"), Side("ingress", True, "node-local"))
        flow = _Flow(self, source, destination, port, protocol.upper())
        egress, ingress = flow.side(EGRESS), flow.side(INGRESS)
        return Verdict(egress.allowed and ingress.allowed, egress, ingress)

    def isolating(self, workload: Workload, policy_type: str) -> List[Policy]:
        """The policies that select the workload and carry the direction, by key."""
        key = (id(workload), policy_type)
        if key not in self._isolating:
            self._isolating[key] = [
                p
                for p in self.policies
                if policy_type in p.policy_types and self.resolver.selects(workload, p.pod_selector, p.namespace)
            ]
        return self._isolating[key]

    def _end(self, endpoint: Endpoint, family: int) -> _End:
        """An address is the workload that owns it, if any: a packet from it is that workload."""
        if isinstance(endpoint, Workload):
            addresses = endpoint.addresses_of(family)
            return _End(endpoint, addresses[0] if addresses else "")
        try:
            return _End(self.owners.get(_ip(endpoint)), endpoint)
        except ValueError:  # a name with no address (a probe source outside the fleet): no CIDR matches it
            return _End(None, "")

    def _node_local(self, source: _End, destination: _End) -> bool:
        """Self, the node that hosts the destination (its host-mode workload or its own
        addresses): never cut. A VM is no node: VM to VM on one hypervisor, and VM to its
        hypervisor, are judged like any other flow."""
        if destination.workload is None:
            return False
        if source.workload is destination.workload:
            return True
        host = destination.workload.enforcer
        if source.workload is not None and source.workload.interface is None and source.workload.enforcer == host:
            return True
        return bool(source.address) and _ip(source.address) in self.node_addresses.get(host, ())


def _all_probes(workloads: Sequence[Workload], ports: Optional[List[Tuple[str, int]]]) -> List[Dict[str, Any]]:
    records = []
    ordered = sorted(workloads, key=lambda w: (w.enforcer, w.namespace, w.name))
    for src in ordered:
        for dst in ordered:
            for family in (4, 6):
                if src is dst or not src.addresses_of(family) or not dst.addresses_of(family):
                    continue
                for protocol, port in ports if ports is not None else _declared(dst):
                    records.append({"src": src.enforcer, "dst": dst.enforcer,
                                    "address": dst.addresses_of(family)[0], "family": family,
                                    "protocol": protocol, "port": port})
    return _unique(records)


def _declared(workload: Workload) -> List[Tuple[str, int]]:
    """The TCP and UDP ports a workload declares (probes carry no SCTP)."""
    ports = sorted((p.protocol, p.port) for p in workload.ports if p.protocol in ("TCP", "UDP"))
    return [(protocol.lower(), port) for protocol, port in ports]


def _unique(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    seen, kept = set(), []
    for record in records:
        key = tuple(sorted(record.items()))
        if key not in seen:
            seen.add(key)
            kept.append(record)
    return kept


class _Flow:
    """One new connection, judged per side from the IR alone."""

    def __init__(self, simulator: Simulator, source: _End, destination: _End, port: int, protocol: str):
        self.simulator, self.source, self.destination = simulator, source, destination
        self.port, self.protocol = port, protocol

    def side(self, policy_type: str) -> Side:
        label = policy_type.lower()
        local, remote = (self.destination, self.source) if policy_type == INGRESS else (self.source, self.destination)
        if local.workload is None:
            return Side(label, True, "outside the fleet: not enforced here")
        privileged = [r.name for r in self.simulator.options.privileged if self._privileged_allows(r, label, local, remote)]
        if privileged:
            return Side(label, True, "privileged %s" % ", ".join(privileged), allowed_by=tuple("privileged " + n for n in privileged))
        isolating = self.simulator.isolating(local.workload, policy_type)
        if not isolating:
            return Side(label, True, "not isolated for %s" % label)
        keys = tuple(p.key for p in isolating)
        allowed_by = tuple(
            "%s %s[%d]" % (p.key, label, number)
            for p in isolating
            for number, rule in enumerate(p.ingress if policy_type == INGRESS else p.egress)
            if self._rule_allows(p, rule, policy_type, remote)
        )
        if allowed_by:
            return Side(label, True, "allowed by " + ", ".join(allowed_by), keys, allowed_by)
        return Side(label, False, "isolated for %s by %s; no rule matched" % (label, ", ".join(keys)), keys)

    def _rule_allows(self, policy: Policy, rule: Rule, policy_type: str, remote: _End) -> bool:
        peers: Sequence[Optional[Peer]] = rule.peers or (None,)
        return any(
            _peer_matches(self.simulator, policy, peer, remote) and self._ports_allow(rule.ports, peer, policy_type)
            for peer in peers
        )

    def _ports_allow(self, ports: Sequence[PortSpec], peer: Optional[Peer], policy_type: str) -> bool:
        return not ports or any(self._port_matches(spec, peer, policy_type) for spec in ports)

    def _port_matches(self, spec: PortSpec, peer: Optional[Peer], policy_type: str) -> bool:
        if spec.protocol != self.protocol:
            return False
        if spec.port is None:
            return True
        if isinstance(spec.port, int):
            return spec.port <= self.port <= (spec.end_port or spec.port)
        # A named port is the destination workload's own; never an ipBlock's address.
        owner = self.destination.workload
        if owner is None or (policy_type == EGRESS and peer is not None and peer.ip_block is not None):
            return False
        return owner.resolve_port(spec.port, spec.protocol) == self.port

    def _privileged_allows(self, rule: PrivilegedRule, direction: str, local: _End, remote: _End) -> bool:
        if rule.direction != direction or rule.protocol not in ("ALL", self.protocol):
            return False
        if rule.local_cidrs and not any(_in_cidr(local.address, c) for c in rule.local_cidrs):
            return False
        if rule.ports is not None and not rule.ports[0] <= self.port <= rule.ports[1]:
            return False
        return not rule.cidrs or any(_in_cidr(remote.address, c) for c in rule.cidrs)


def _peer_matches(simulator: Simulator, policy: Policy, peer: Optional[Peer], remote: _End) -> bool:
    if peer is None:
        return True
    if peer.ip_block is not None:
        block = peer.ip_block
        return _in_cidr(remote.address, block.cidr) and not any(_in_cidr(remote.address, e) for e in block.excepts)
    if remote.workload is None:
        return False  # selectors name workloads, never node or external addresses
    return simulator.resolver.peer_selects(policy.namespace, peer, remote.workload)


@functools.lru_cache(maxsize=65536)
def _ip(address: str):
    return ipaddress.ip_address(address)


@functools.lru_cache(maxsize=4096)
def _network(cidr: str):
    return ipaddress.ip_network(cidr, strict=False)


def _in_cidr(address: str, cidr: str) -> bool:
    if not address:
        return False
    ip, network = _ip(address), _network(cidr)
    return ip.version == network.version and ip in network
