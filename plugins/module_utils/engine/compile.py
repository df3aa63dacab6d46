# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compile the whole fleet once into each host's desired kernel state.

Per family, in the filter table: INPUT -> NETPOL-INGRESS and OUTPUT -> NETPOL-EGRESS at
position 1. Those chains let loopback, replies, vital ICMPv6 and privileged paths
RETURN, then dispatch to the chain of the workload when it is isolated in that
direction. A workload chain RETURNs what its policies allow and DROPs the rest. We never
ACCEPT, so the host's own firewall still has its say. Peers are ipsets, so a host's rule
count follows the policies selecting it, not the number of peers. Pure Python.

Bridge mode (VMs on a hypervisor's bridge ports, Workload.interface set) reuses the same
per-workload chains and sets; bridge/dataplane.py lays out how bridged packets reach them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.netpol.fleet.plugins.module_utils.bridge.antispoof import antispoof_table
from ansible_collections.netpol.fleet.plugins.module_utils.bridge.dataplane import BridgePort, bridge_tables
from ansible_collections.netpol.fleet.plugins.module_utils.bridge.zones import layout, with_marks
from ansible_collections.netpol.fleet.plugins.module_utils.engine.compile_sets import SetBook
from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import Chain, HostState, IpSet, Jump, Table
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import (
    EGRESS,
    INGRESS,
    CompileOptions,
    Fleet,
    LogOptions,
    Peer,
    Policy,
    PortSpec,
    PrivilegedRule,
    Rule,
    Workload,
)
from ansible_collections.netpol.fleet.plugins.module_utils.engine.names import (
    EGRESS_CHAIN,
    INGRESS_CHAIN,
    comment_match,
    label_match,
    nflog_prefix,
    workload_chain,
)
from ansible_collections.netpol.fleet.plugins.module_utils.engine.selectors import Resolver

FAMILIES = (4, 6)
TABLE_FAMILY = {4: "ipv4", 6: "ipv6"}
PROTOCOL_ORDER = ("TCP", "UDP", "SCTP")
MULTIPORT_SLOTS = 15  # xt_multiport: 15 ports, a range counts twice
# Unreachable, too-big, time-exceeded, parameter problem; MLD; RS/RA/NS/NA/redirect; MLDv2.
# They come before the INVALID drop: conntrack leaves ND untracked and calls redirects invalid.
VITAL_ICMPV6 = (1, 2, 3, 4, 130, 131, 132, 133, 134, 135, 136, 137, 143)
# xt_limit: rates are kept as a period in 1/10000 s; printed in the unit where the count is whole.
RATE_SCALE = 10000
RATE_WORDS = (("second", 1), ("minute", 60), ("hour", 3600), ("day", 86400))  # parse order
RATE_PRINTED = (("day", 86400), ("hour", 3600), ("min", 60), ("sec", 1))
DEFAULT_BURST = 5  # iptables-save leaves the default burst out
ESTABLISHED = "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
INVALID = "-m conntrack --ctstate INVALID -j DROP"

PortRange = Tuple[int, int]


@dataclass(frozen=True)
class Direction:
    """What differs between ingress and egress: names, base chain, and which side is remote."""

    policy_type: str  # Ingress / Egress
    base: str  # INPUT / OUTPUT
    chain: str  # NETPOL-INGRESS / NETPOL-EGRESS
    iface: str  # -i / -o: loopback is node-local
    remote: str  # set flag of the peer's address: src / dst
    local: str  # -d / -s: the workload's own address, for dispatch
    label: str  # ingress / egress, in comments and privileged rules

    def rules_of(self, policy: Policy) -> Tuple[Rule, ...]:
        return policy.ingress if self.policy_type == INGRESS else policy.egress


DIRECTIONS = (
    Direction(INGRESS, "INPUT", INGRESS_CHAIN, "-i", "src", "-d", "ingress"),
    Direction(EGRESS, "OUTPUT", EGRESS_CHAIN, "-o", "dst", "-s", "egress"),
)
DIRECTION_BY_LABEL = {d.label: d for d in DIRECTIONS}


def compile_fleet(
    fleet: Fleet,
    policies: Sequence[Policy],
    options: CompileOptions = CompileOptions(),
    hosts: Optional[Iterable[str]] = None,
    port_bridges: Optional[Mapping[str, Mapping[str, str]]] = None,
    bridge_uplinks: Optional[Mapping[str, Mapping[str, Sequence[str]]]] = None,
    bridge_vlans: Optional[Mapping[str, Mapping[str, Mapping]]] = None,
) -> Dict[str, HostState]:
    """Each host's HostState; `hosts` limits the output, peers still resolve fleet-wide.

    port_bridges: hypervisor -> VM bridge port -> the bridge it is a port of, as read from the
    hypervisor (bridge mode); a VM whose port is missing there is a ValueError.
    bridge_uplinks: hypervisor -> bridge -> its uplink ports (netpol_bridge_uplinks), used when
    options.bridge_drop_unmanaged drops the packets of every other port not in netpol_workloads.
    bridge_vlans: hypervisor -> port -> its VLANs (and bridge), every port of its VLAN-aware bridges
    (netpol_bridge query `vlans`): their VMs' conntrack zones are per VLAN (bridge/zones.py).
    """
    resolver = Resolver(fleet)
    compiler = _Compiler(resolver, SetBook(resolver), sorted(policies, key=lambda p: p.key), options)
    compiler.node_addresses = dict(fleet.node_addresses)
    compiler.uplinks = dict(bridge_uplinks or {})
    compiler.vlans = dict(bridge_vlans or {})
    by_host: Dict[str, List[Workload]] = {}
    for workload in sorted(fleet.workloads, key=lambda w: (w.namespace, w.name)):
        by_host.setdefault(workload.enforcer, []).append(workload)
    wanted = sorted(by_host) if hosts is None else sorted(set(hosts))
    bridges = port_bridges or {}
    return {host: compiler.host_state(host, by_host.get(host, []), bridges.get(host, {})) for host in wanted}


class _Compiler:
    def __init__(self, resolver: Resolver, book: SetBook, policies: List[Policy], options: CompileOptions):
        self.book, self.options = book, options
        self.node_addresses: Dict[str, Tuple[str, ...]] = {}
        self.uplinks: Dict[str, Mapping[str, Sequence[str]]] = {}
        self.vlans: Dict[str, Mapping[str, Mapping]] = {}
        self.targets: Dict[int, List[Policy]] = {}  # id(workload) -> policies selecting it, by key
        self._memo: Dict[Tuple, Tuple[List[str], List[IpSet]]] = {}
        # The privileged paths are the same on every host: rendered once per compile, not per host.
        self._privileged_by = {(d.label, family): [rule for p in options.privileged if p.direction == d.label
                                                   for rule in _privileged_rules(p, d, family)]
                               for d in DIRECTIONS for family in FAMILIES}
        for policy in policies:
            for workload in resolver.select(policy.pod_selector, policy.namespace):
                self.targets.setdefault(id(workload), []).append(policy)

    def host_state(self, host: str, workloads: List[Workload], port_bridges: Mapping[str, str]) -> HostState:
        used: Dict[str, IpSet] = {}
        own = [w for w in workloads if w.interface is None]
        ports = _bridge_ports(host, [w for w in workloads if w.interface is not None], port_bridges)
        tables: List[Table] = []
        for family in FAMILIES:
            filter_table = self._table(family, own, used, [p.workload for p in ports])
            if ports:
                node_set = self._node_set(host, family, used)
                uplinks = self.uplinks.get(host, {}) if self.options.bridge_drop_unmanaged else None
                bridged = bridge_tables(family, ports, self._vm_chain(used), self._privileged, VITAL_ICMPV6, node_set,
                                        uplinks, self.vlans.get(host))
                filter_table = replace(filter_table, chains=filter_table.chains + bridged.filter_chains,
                                       jumps=filter_table.jumps + bridged.filter_jumps)
                tables += [filter_table, bridged.raw, bridged.nat]
            else:
                tables.append(filter_table)
        layer2 = antispoof_table([p.workload for p in ports], self.options.log)
        if ports:
            layer2 = with_marks(layer2, layout({p.interface: p.bridge for p in ports}, self.vlans.get(host) or {}))
        if layer2.chains:  # a hypervisor whose every port is antispoof: off needs no ebtables at all
            tables.append(layer2)
        return HostState(host=host, sets=tuple(used[name] for name in sorted(used)),
                         tables=tuple(sorted(tables, key=lambda t: (t.family, t.name != "filter", t.name))),
                         bridges=tuple(sorted({p.bridge for p in ports})))

    def _node_set(self, host: str, family: int, used: Dict[str, IpSet]) -> Optional[str]:
        """The set of the hypervisor's own addresses: its traffic to its VMs is always allowed, also
        when it comes back routed through the bridge (then it crosses FORWARD)."""
        node_set = self.book.address_set(family, "addresses of node %s" % host, self.node_addresses.get(host, ()))
        if node_set is None:
            return None
        used[node_set.name] = node_set
        return node_set.name

    def _vm_chain(self, used: Dict[str, IpSet]):
        """A VM's policy chain in one direction (None when nothing isolates it), as in host mode."""
        def build(label: str, family: int, workload: Workload) -> Optional[Chain]:
            direction = DIRECTION_BY_LABEL[label]
            policies = self._isolating(workload, direction)
            if not policies:
                return None
            return Chain(_chain_of(direction, workload), tuple(self._workload_rules(direction, family, workload, policies, used)))
        return build

    def _privileged(self, label: str, family: int) -> List[str]:
        return list(self._privileged_by[(label, family)])

    def _table(self, family: int, workloads: List[Workload], used: Dict[str, IpSet], vms: Sequence[Workload] = ()) -> Table:
        chains: List[Chain] = []
        for direction in DIRECTIONS:
            isolated = [(w, self._isolating(w, direction)) for w in workloads]
            isolated = [(w, ps) for w, ps in isolated if ps]
            dispatch = [rule for w, policies in isolated for rule in _dispatch(direction, w, family, len(workloads))]
            invalid = [rule for w, _ps in isolated if w.interface is None  # host mode: the host's own traffic
                       for rule in _invalid_drop(direction, w, family, len(workloads))]
            base = self._base_rules(direction, family, invalid) + self._node_to_vms(direction, family, workloads, vms, used) + dispatch
            chains.append(Chain(direction.chain, tuple(base)))
            for workload, policies in isolated:
                rules = self._workload_rules(direction, family, workload, policies, used)
                chains.append(Chain(_chain_of(direction, workload), tuple(rules)))
        jumps = tuple(Jump(d.base, d.chain, enforce_position=self.options.enforce_jump_position) for d in DIRECTIONS)
        return Table(TABLE_FAMILY[family], "filter", tuple(chains), jumps)

    def _node_to_vms(self, direction: Direction, family: int, workloads: List[Workload], vms: Sequence[Workload],
                     used: Dict[str, IpSet]) -> List[str]:
        """A hypervisor that is a workload itself reaching its own VMs: node traffic, always allowed."""
        if direction.policy_type != EGRESS or not vms or not workloads:
            return []
        vm_set = self.book.workload_set(family, "vms of node %s" % vms[0].enforcer, vms)
        if vm_set is None:
            return []
        used[vm_set.name] = vm_set
        return ["-m set --match-set %s dst %s -j RETURN" % (vm_set.name, comment_match("node to its own VMs"))]

    def _isolating(self, workload: Workload, direction: Direction) -> List[Policy]:
        return [p for p in self.targets.get(id(workload), ()) if direction.policy_type in p.policy_types]

    def _base_rules(self, direction: Direction, family: int, invalid: List[str]) -> List[str]:
        """Loopback, replies, vital ICMPv6, INVALID drops of isolated workloads, privileged paths.

        The INVALID drop comes before the privileged RETURNs: a packet conntrack cannot place
        (SYN+FIN, out-of-window) is no management connection, and once RETURNed it would be
        past the collection's reach. Only for isolated workloads: a host no policy isolates
        keeps whatever its own firewall does with them.
        """
        label = label_match("netpol %s entry chain of this host" % direction.label)
        rules = ["%s lo %s -j RETURN" % (direction.iface, label), ESTABLISHED]
        if family == 6:
            rules += ["-p ipv6-icmp -m icmp6 --icmpv6-type %d -j RETURN" % t for t in VITAL_ICMPV6]
        rules += invalid
        return rules + self._privileged(direction.label, family)

    def _workload_rules(
        self, direction: Direction, family: int, workload: Workload, policies: List[Policy], used: Dict[str, IpSet]
    ) -> List[str]:
        who = "%s/%s" % (workload.namespace, workload.name)
        # The first rule says what the hashed chain name stands for: the workload, and the policies isolating it.
        label = "netpol %s of workload %s: policies %s" % (direction.label, who, ",".join(p.key for p in policies))
        rules = [INVALID.replace(" -j DROP", " %s -j DROP" % label_match(label))]
        for policy in policies:
            policy_rules, policy_sets = self._policy_rules(direction, family, workload, policy)
            rules += policy_rules
            used.update((s.name, s) for s in policy_sets)
        if self.options.log is not None:
            rules.append(_nflog_rule(self.options.log, "netpol drop %s %s" % (direction.label, who)))
        rules.append("%s -j DROP" % comment_match("%s isolated for %s" % (who, direction.label)))
        return rules

    def _policy_rules(
        self, direction: Direction, family: int, workload: Workload, policy: Policy
    ) -> Tuple[List[str], List[IpSet]]:
        """One policy's RETURN rules and the sets they use, the same for every target
        except through named ports resolved on the target: computed once per port list."""
        rules = direction.rules_of(policy)
        named = direction.policy_type == INGRESS and any(isinstance(p.port, str) for r in rules for p in r.ports)
        memo_key = (direction.label, family, policy.key, workload.ports if named else None)
        if memo_key not in self._memo:
            used: Dict[str, IpSet] = {}
            lines: List[str] = []
            for number, rule in enumerate(rules):
                comment = comment_match("%s %s[%d]" % (policy.key, direction.label, number))
                ports = _split_ports(rule.ports, workload if direction.policy_type == INGRESS else None)
                for peer in rule.peers or (None,):
                    lines += self._peer_rules(direction, family, policy.namespace, peer, ports, comment, used)
            self._memo[memo_key] = (lines, list(used.values()))
        return self._memo[memo_key]

    def _peer_rules(
        self,
        direction: Direction,
        family: int,
        namespace: str,
        peer: Optional[Peer],
        ports: Optional[PortPlan],
        comment: str,
        used: Dict[str, IpSet],
    ) -> List[str]:
        """RETURN rules for one peer of one rule: its set match x each protocol's ports."""
        remote = ""
        if peer is not None:
            peer_set = self.book.peer_set(family, namespace, peer)
            if peer_set is None:
                return []  # nothing of this family to allow; the final DROP still isolates it
            used[peer_set.name] = peer_set
            remote = " -m set --match-set %s %s" % (peer_set.name, direction.remote)
        if ports is None:
            return ["%s %s -j RETURN" % (remote.strip(), comment) if remote else "%s -j RETURN" % comment]
        lines = [
            "-p %s%s%s %s -j RETURN" % (protocol.lower(), port_match, remote, comment)
            for protocol in PROTOCOL_ORDER
            if protocol in ports.numeric
            for port_match in _port_matches(protocol, ports.numeric[protocol])
        ]
        if peer is None or peer.ip_block is None:  # a named port is a workload's, never an address range's
            lines += self._named_port_rules(family, namespace, peer, ports, comment, used)
        return lines

    def _named_port_rules(
        self, family: int, namespace: str, peer: Optional[Peer], ports: PortPlan, comment: str, used: Dict[str, IpSet]
    ) -> List[str]:
        """Egress to named ports: one hash:ip,port set of the peer's (address, number) pairs,
        which is the peer match too, so destinations may give the name different numbers."""
        lines = []
        for protocol, name in ports.named:
            port_set = self.book.named_port_set(family, namespace, peer, protocol, name)
            if port_set is not None and ports.numeric.get(protocol) != [None]:
                used[port_set.name] = port_set
                lines.append("-p %s -m set --match-set %s dst,dst %s -j RETURN" % (protocol.lower(), port_set.name, comment))
        return lines


def _bridge_ports(host: str, vms: Sequence[Workload], port_bridges: Mapping[str, str]) -> List[BridgePort]:
    missing = [w for w in vms if w.interface not in port_bridges]
    if missing:
        raise ValueError("host %s: no bridge known for the port of %s" % (
            host, ", ".join("%s/%s (%s)" % (w.namespace, w.name, w.interface) for w in missing)))
    return [BridgePort(w, port_bridges[w.interface or ""]) for w in vms]


def _nflog_rule(log: LogOptions, prefix: str) -> str:
    burst = "" if log.burst == DEFAULT_BURST else " --limit-burst %d" % log.burst
    return "-m limit --limit %s%s -j NFLOG --nflog-prefix %s --nflog-group %d" % (
        limit_text(log.limit), burst, nflog_prefix(prefix), log.group)


def limit_text(limit: str) -> str:
    """A rate as iptables-save prints it back ("10/minute" is "10/min", "60/min" is
    "1/sec"), so the rule text compares equal to the kernel's on the next run."""
    count, slash, unit = limit.partition("/")
    per = 1 if not slash else next((s for word, s in RATE_WORDS if unit and word.startswith(unit.lower())), 0)
    if not count.isdigit() or int(count) == 0 or not per or RATE_SCALE * per // int(count) == 0:
        raise ValueError("log limit %r is not N/second, N/minute, N/hour or N/day" % limit)
    period = RATE_SCALE * per // int(count)
    shown = RATE_PRINTED[0]
    for label, seconds in RATE_PRINTED[1:]:  # iptables' print_rate: finer units while the count stays whole
        mult = RATE_SCALE * seconds
        if period > mult or mult // period < mult % period:
            break
        shown = (label, seconds)
    return "%d/%s" % (RATE_SCALE * shown[1] // period, shown[0])


def _chain_of(direction: Direction, workload: Workload) -> str:
    return workload_chain(direction.label, "%s/%s" % (workload.namespace, workload.name))


def _dispatch(direction: Direction, workload: Workload, family: int, workloads_on_host: int) -> List[str]:
    """The jump into a workload's chain. Host mode: the host is the workload, so every packet.

    The seam for bridge mode: several workloads share a host, so dispatch by address
    (and later by bridge port) instead.
    """
    chain = _chain_of(direction, workload)
    if workloads_on_host == 1:
        return ["-j %s" % chain]
    suffix = "/32" if family == 4 else "/128"
    return ["%s %s%s -j %s" % (direction.local, a, suffix, chain) for a in workload.addresses_of(family)]


def _invalid_drop(direction: Direction, workload: Workload, family: int, workloads_on_host: int) -> List[str]:
    """The INVALID drop of an isolated workload: every packet in host mode, by address otherwise."""
    if workloads_on_host == 1:
        return [INVALID]
    suffix = "/32" if family == 4 else "/128"
    return ["%s %s%s %s" % (direction.local, a, suffix, INVALID) for a in workload.addresses_of(family)]


@dataclass(frozen=True)
class PortPlan:
    """A rule's ports: numeric ranges per protocol ([None] = every port), named ports left to
    resolve per destination (egress only)."""

    numeric: Dict[str, List[Optional[PortRange]]]
    named: Tuple[Tuple[str, str], ...]


def _split_ports(ports: Sequence[PortSpec], owner: Optional[Workload]) -> Optional[PortPlan]:
    """None for 'every port of every protocol'. With an owner (ingress: the target itself)
    named ports resolve now; one that does not resolve allows nothing (never 'all ports')."""
    if not ports:
        return None
    numeric: Dict[str, List[Optional[PortRange]]] = {}
    named: List[Tuple[str, str]] = []
    for spec in ports:
        if isinstance(spec.port, str):
            if owner is None:
                if (spec.protocol, spec.port) not in named:
                    named.append((spec.protocol, spec.port))
                continue
            number = owner.resolve_port(spec.port, spec.protocol)
            if number is not None:
                _add_range(numeric, spec.protocol, (number, number))
        elif spec.port is None:
            numeric[spec.protocol] = [None]
        else:
            _add_range(numeric, spec.protocol, (spec.port, spec.end_port or spec.port))
    return PortPlan(numeric, tuple(named))


def _add_range(numeric: Dict[str, List[Optional[PortRange]]], protocol: str, port_range: PortRange) -> None:
    if numeric.get(protocol) != [None]:  # every port already: a range adds nothing
        numeric.setdefault(protocol, []).append(port_range)


def _port_matches(protocol: str, ranges: List[Optional[PortRange]]) -> List[str]:
    """The port part of rules: '' for every port, one --dport, or multiport chunks."""
    if ranges == [None]:
        return [""]
    ranges_text = [_range_text(r) for r in _merge(ranges)]  # type: ignore[arg-type]
    if len(ranges_text) == 1:
        return [" -m %s --dport %s" % (protocol.lower(), ranges_text[0])]
    chunks: List[List[str]] = [[]]
    for text in ranges_text:
        slots = sum(2 if ":" in t else 1 for t in chunks[-1] + [text])
        if slots > MULTIPORT_SLOTS:
            chunks.append([])
        chunks[-1].append(text)
    return [" -m multiport --dports %s" % ",".join(chunk) for chunk in chunks]


def _merge(ranges: List[PortRange]) -> List[PortRange]:
    """Sorted, overlapping or adjacent ranges joined: fewer, stable rules."""
    merged: List[PortRange] = []
    for first, last in sorted(set(ranges)):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(last, merged[-1][1]))
        else:
            merged.append((first, last))
    return merged


def _range_text(port_range: PortRange) -> str:
    first, last = port_range
    return str(first) if first == last else "%d:%d" % (first, last)


def _privileged_rules(rule: PrivilegedRule, direction: Direction, family: int) -> List[str]:
    """RETURN rules for a privileged path, split by family (a v4 CIDR never reaches ip6tables)."""
    if rule.protocol == "ICMPV6" and family == 4:
        return []
    cidrs = [c for c in rule.cidrs if (":" in c) == (family == 6)]
    if rule.cidrs and not cidrs:
        return []
    locals_ = [c for c in rule.local_cidrs if (":" in c) == (family == 6)]
    if rule.local_cidrs and not locals_:
        return []
    remote_flag, local_flag = ("-s", "-d") if direction.policy_type == INGRESS else ("-d", "-s")
    remotes = ["%s %s " % (remote_flag, _host_cidr(c)) if not c.endswith("/0") else "" for c in cidrs] or [""]
    owns = ["%s %s " % (local_flag, _host_cidr(c)) if not c.endswith("/0") else "" for c in locals_] or [""]
    # iptables-save prints -s before -d: keep its order so the texts compare equal.
    pairs = [(r, o) if remote_flag == "-s" else (o, r) for r in remotes for o in owns]
    comment = comment_match("privileged %s" % rule.name)
    matches = _privileged_matches(rule)
    return ["%s%s%s%s -j RETURN" % (first, second, match, comment) for first, second in pairs for match in matches]


def _privileged_matches(rule: PrivilegedRule) -> List[str]:
    """Protocol and port matches; ALL with ports means those ports of every port protocol."""
    if rule.protocol == "ALL" and rule.ports is None:
        return [""]
    if rule.protocol == "ICMPV6":
        if not rule.icmpv6_types:
            return ["-p ipv6-icmp "]
        return ["-p ipv6-icmp -m icmp6 --icmpv6-type %d " % t for t in rule.icmpv6_types]
    protocols = PROTOCOL_ORDER if rule.protocol == "ALL" else (rule.protocol,)
    ranges: List[Optional[PortRange]] = [rule.ports] if rule.ports else [None]
    return ["-p %s%s " % (p.lower(), m) for p in protocols for m in _port_matches(p, ranges)]


def _host_cidr(cidr: str) -> str:
    """As iptables-save prints it: host bits cleared, always a prefix length."""
    return str(ipaddress.ip_network(cidr, strict=False))
