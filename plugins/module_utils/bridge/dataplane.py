# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bridge mode: the chains that enforce policy for VMs on a hypervisor's bridge ports.

The per-VM policy chains (NETPOL-I-/NETPOL-E-<hash>) and their sets are host mode's, built by
engine/compile.py and handed in as callables; this module only lays out how bridged packets
reach them (docs/bridge.md has the order of checks for one packet):

    filter FORWARD  -m physdev --physdev-is-bridged -> NETPOL-BRIDGE: is a managed port involved?
                    -> NETPOL-BR-CHECK: replies ACCEPT, vital ICMPv6 ACCEPT, INVALID DROP,
                       NETPOL-BR-EGRESS (source VM by --physdev-in), NETPOL-BR-INGRESS
                       (destination VM by --physdev-out), then ACCEPT: allowed bridged traffic
                       passes even when FORWARD's policy is DROP (Docker), as in Neutron/libvirt.
    filter INPUT    -m physdev --physdev-is-in -> NETPOL-BR-INPUT: VM -> hypervisor is the VM's
                    egress (--physdev-is-bridged never matches in INPUT); RETURN, never ACCEPT.
    raw PREROUTING  NETPOL-BR-ZONES: one conntrack zone per L2 domain (a bridge, or a VLAN of a
                    VLAN-aware bridge: bridge/zones.py), never per port.
    nat PREROUTING  NETPOL-BR-NAT: packets from managed ports skip the host's DNAT (kube-proxy).

With netpol_bridge_drop_unmanaged, NETPOL-BRIDGE first sends every packet of a managed bridge through
NETPOL-BR-FROM and NETPOL-BR-TO (NETPOL-BR-INPUT through NETPOL-BR-FROM): a packet that enters or
leaves by a port that is neither a managed VM's nor a declared uplink of that bridge is dropped.

Pure Python, standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.netpol.fleet.plugins.module_utils.bridge.zones import PortVlans, layout, raw_table
from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import Chain, Jump, Table
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import Workload
from ansible_collections.netpol.fleet.plugins.module_utils.engine.names import comment_match, label_match

BRIDGE_CHAIN = "NETPOL-BRIDGE"
CHECK_CHAIN = "NETPOL-BR-CHECK"
EGRESS_CHAIN = "NETPOL-BR-EGRESS"
INGRESS_CHAIN = "NETPOL-BR-INGRESS"
INPUT_CHAIN = "NETPOL-BR-INPUT"
NAT_CHAIN = "NETPOL-BR-NAT"
FROM_KNOWN_CHAIN = "NETPOL-BR-FROM"
TO_KNOWN_CHAIN = "NETPOL-BR-TO"
TABLE_FAMILY = {4: "ipv4", 6: "ipv6"}

BRIDGED = "-m physdev --physdev-is-bridged"
FROM_BRIDGE_PORT = "-m physdev --physdev-is-in"
REPLIES_ACCEPT = "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
REPLIES_RETURN = "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
INVALID_DROP = "-m conntrack --ctstate INVALID -j DROP"

# direction label ("ingress"/"egress"), family, VM -> the VM's policy chain, or None when no
# policy isolates it in that direction.
WorkloadChain = Callable[[str, int, Workload], Optional[Chain]]
# direction label, family -> the privileged RETURN rules of that direction.
PrivilegedRules = Callable[[str, int], List[str]]


@dataclass(frozen=True)
class BridgePort:
    """A VM's bridge port and the bridge it is a port of (read from the hypervisor)."""

    workload: Workload
    bridge: str

    @property
    def interface(self) -> str:
        return self.workload.interface or ""

    @property
    def who(self) -> str:
        return "%s/%s" % (self.workload.namespace, self.workload.name)


@dataclass(frozen=True)
class BridgeTables:
    """One family's bridge-mode state: chains and jumps to add to filter, and the raw and nat tables."""

    filter_chains: Tuple[Chain, ...]
    filter_jumps: Tuple[Jump, ...]
    raw: Table
    nat: Table


def bridge_tables(
    family: int,
    ports: Sequence[BridgePort],
    workload_chain: WorkloadChain,
    privileged: PrivilegedRules,
    vital_icmpv6: Sequence[int],
    node_set: Optional[str] = None,
    uplinks: Optional[Mapping[str, Sequence[str]]] = None,
    vlans: Optional[Mapping[str, PortVlans]] = None,
) -> BridgeTables:
    """Everything one family needs for the VMs of one hypervisor; node_set names the set of the
    hypervisor's own addresses (its traffic to its VMs is node traffic, always allowed).

    uplinks: None keeps ports not in netpol_workloads as they are (the host's rules decide them);
    otherwise bridge -> its uplink ports, and packets of every other port of a managed bridge drop.
    vlans: the VLANs of every port of the hypervisor's VLAN-aware bridges (netpol_bridge query), whose
    VMs get a conntrack zone per VLAN."""
    ordered = sorted(ports, key=lambda p: p.interface)
    unmanaged = _Unmanaged(ordered, uplinks)
    egress = [(p, workload_chain("egress", family, p.workload)) for p in ordered]
    ingress = [(p, workload_chain("ingress", family, p.workload)) for p in ordered]
    policy_chains = [c for _p, c in egress + ingress if c is not None]
    vital = _vital(family, vital_icmpv6)
    chains = (
        Chain(BRIDGE_CHAIN, tuple(unmanaged.jumps(TO_KNOWN_CHAIN) + _managed_dispatch(ordered))),
        Chain(CHECK_CHAIN, tuple(_check_rules(vital))),
        Chain(EGRESS_CHAIN, tuple(privileged("egress", family) + _dispatch("--physdev-in", egress, "egress of VM %s"))),
        Chain(INGRESS_CHAIN, tuple(_from_node(node_set) + privileged("ingress", family)
                                   + _dispatch("--physdev-out", ingress, "ingress of VM %s"))),
        Chain(INPUT_CHAIN, tuple(_input_rules(vital, unmanaged.jumps() + privileged("egress", family), egress))),
    ) + unmanaged.chains()
    jumps = (Jump("FORWARD", BRIDGE_CHAIN, BRIDGED, 1), Jump("INPUT", INPUT_CHAIN, FROM_BRIDGE_PORT, 2))
    return BridgeTables(
        filter_chains=chains + tuple(_unique(policy_chains)),
        filter_jumps=jumps,
        raw=raw_table(TABLE_FAMILY[family], layout({p.interface: p.bridge for p in ordered}, vlans or {})),
        nat=_nat_table(family, ordered),
    )


class _Unmanaged:
    """The drop of packets of ports that are neither a managed VM's nor an uplink (off: no rules)."""

    def __init__(self, ports: Sequence[BridgePort], uplinks: Optional[Mapping[str, Sequence[str]]]):
        self.on = uplinks is not None
        self.bridges = sorted({p.bridge for p in ports})
        given = uplinks or {}
        self.known = dict({p.interface: "VM %s" % p.who for p in ports},
                          **{u: "uplink of %s" % b for b in self.bridges for u in given.get(b, ())})

    def jumps(self, *also: str) -> List[str]:
        """Per managed bridge: from a known port (and, in FORWARD, to one) or drop."""
        if not self.on:
            return []
        return ["-i %s %s -j %s" % (bridge, comment_match("ports of %s not in netpol_workloads drop" % bridge), chain)
                for bridge in self.bridges for chain in (FROM_KNOWN_CHAIN,) + also]

    def chains(self) -> Tuple[Chain, ...]:
        if not self.on:
            return ()
        return tuple(Chain(name, tuple(["-m physdev %s %s %s -j RETURN" % (flag, port, comment_match(self.known[port]))
                                        for port in sorted(self.known)] + [
            "%s -j DROP" % comment_match("netpol bridge: %s a port not in netpol_workloads nor an uplink" % way)]))
            for name, flag, way in ((FROM_KNOWN_CHAIN, "--physdev-in", "from"), (TO_KNOWN_CHAIN, "--physdev-out", "to")))


def _vital(family: int, types: Sequence[int]) -> List[str]:
    """ICMPv6 that IPv6 needs (ND, MLD, PMTU), before the INVALID drop: conntrack leaves ND untracked."""
    if family != 6:
        return []
    return ["-p ipv6-icmp -m icmp6 --icmpv6-type %d" % t for t in types]


def _managed_dispatch(ports: Sequence[BridgePort]) -> List[str]:
    """A bridged packet concerns us when it enters or leaves by a managed port; others fall through."""
    return [
        "-m physdev %s %s %s -j %s" % (flag, p.interface, comment_match("%s VM %s" % (way, p.who)), CHECK_CHAIN)
        for p in ports
        for flag, way in (("--physdev-in", "from"), ("--physdev-out", "to"))
    ]


def _check_rules(vital: List[str]) -> List[str]:
    rules = [_labelled(REPLIES_ACCEPT, "netpol bridge: the checks of bridged packets of managed VMs")]
    rules += ["%s -j ACCEPT" % v for v in vital] + [INVALID_DROP]
    rules += ["-j %s" % EGRESS_CHAIN, "-j %s" % INGRESS_CHAIN]
    rules.append("%s -j ACCEPT" % comment_match("netpol bridge: allowed by source egress and destination ingress"))
    return rules


def _from_node(node_set: Optional[str]) -> List[str]:
    """The hypervisor's own addresses reach its VMs through FORWARD too, when routed back to the bridge."""
    if node_set is None:
        return []
    return ["-m set --match-set %s src %s -j RETURN" % (node_set, comment_match("node to its own VMs"))]


def _labelled(rule: str, label: str) -> str:
    """The rule with the comment that says what its chain stands for (host mode's convention)."""
    head, _sep, target = rule.rpartition(" -j ")
    return "%s %s -j %s" % (head, label_match(label), target)


def _dispatch(flag: str, chains: Sequence[Tuple[BridgePort, Optional[Chain]]], what: str) -> List[str]:
    return ["-m physdev %s %s %s -j %s" % (flag, p.interface, comment_match(what % p.who), c.name)
            for p, c in chains if c is not None]


def _input_rules(vital: List[str], privileged: List[str], egress: Sequence[Tuple[BridgePort, Optional[Chain]]]) -> List[str]:
    """VM -> hypervisor: the VM's egress; RETURN so the hypervisor's own INPUT still decides."""
    return ([_labelled(REPLIES_RETURN, "netpol bridge: VMs to the hypervisor")] + ["%s -j RETURN" % v for v in vital]
            + privileged + _dispatch("--physdev-in", egress, "egress of VM %s to the hypervisor"))


def _nat_table(family: int, ports: Sequence[BridgePort]) -> Table:
    rules = tuple(
        "-m physdev --physdev-in %s %s -j ACCEPT" % (p.interface, comment_match("netpol %s: no host NAT" % p.who))
        for p in ports
    )
    return Table(TABLE_FAMILY[family], "nat", (Chain(NAT_CHAIN, rules),), (Jump("PREROUTING", NAT_CHAIN),))


def _unique(chains: Sequence[Chain]) -> List[Chain]:
    seen: Dict[str, Chain] = {}
    for chain in chains:
        seen.setdefault(chain.name, chain)
    return list(seen.values())
