# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Conntrack zones per L2 domain: a bridge, or one VLAN of a VLAN-aware bridge (vlan_filtering 1).

Tenants reuse addresses across VLANs, so a VLAN-aware bridge gets a zone per VLAN that carries a
managed VM (one per bridge would join them). The zone is set in iptables raw PREROUTING, where the
bridge has not yet given an untagged frame its PVID and iptables cannot see a tag, so one packet's L2
domain is found in order:

    ebtables nat PREROUTING  NETPOL-VLAN-MARK, for each port that is not a VM's (the uplink, a trunk,
                             an unmanaged neighbour): an untagged IPv4/IPv6 frame of a port whose PVID
                             is a managed VLAN, and a tagged one of a managed VLAN the port carries, get
                             the domain's index in the low byte of the packet mark (MARK_MASK); a tagged
                             frame of any other VLAN gets none (ebtables' vlan match sees the tag here).
    raw PREROUTING           NETPOL-BR-ZONES: a marked packet -> the zone of its (bridge, VLAN);
                             one from a VM's access port -> by that port (--physdev-in): the zone of
                             (bridge, its VLAN); plain bridges -> one zone per bridge; then our mark
                             bits are cleared, so no later rule (kube-proxy 0x4000/0x8000, Calico
                             0xffff0000, Cilium 0x0f00) ever sees them.

So the frames of a VLAN without managed VMs stay in zone 0, tagged or untagged, on every port: a
port rule in raw would also take the tagged frames of such a VLAN on a trunk into the zone of the
trunk's PVID, where their state would answer for the managed VLAN's packets. VM ports are zoned by
port: an access port's tagged frames are dropped by the anti-spoofing checks, or, with antispoof off,
carry its own VLAN or are dropped by the bridge's ingress filter before conntrack confirms them.
The first CT rule that matches a packet sets its zone (the CT target ignores a packet that already
has a template). Packets to the hypervisor's own addresses stay in zone 0 (their replies leave by
OUTPUT, which is not zoned).
Pure Python, standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.netpol.fleet.plugins.module_utils.bridge.vlans import access_vlan
from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import Chain, Jump, Table
from ansible_collections.netpol.fleet.plugins.module_utils.engine.names import comment_match, stable_hash

ZONES_CHAIN = "NETPOL-BR-ZONES"
MARK_CHAIN = "NETPOL-VLAN-MARK"
# Zones ZONE_BASE..ZONE_SPACE-1 are drawn from the domain's name; 0 is the kernel's default zone.
ZONE_BASE = 0x1000
ZONE_SPACE = 0xE000
# The low byte of the packet mark carries a VLAN domain's index (1..255) from ebtables to raw only:
# clear of kube-proxy (0x4000, 0x8000), Calico (0xffff0000) and Cilium (0x0f00).
MARK_MASK = 0xFF
ENCAPSULATED = ("0800", "86DD")  # IPv4, IPv6, as ebtables-save prints --vlan-encap
UNTAGGED = ("IPv4", "IPv6")  # an untagged frame's ethertype (a tagged one's is 802_1Q), as ebtables-save prints -p
# The hypervisor's own traffic over a bridge stays in zone 0: its replies leave by OUTPUT.
NOT_LOCAL = "-m addrtype ! --dst-type LOCAL"

PortVlans = Mapping[str, Any]  # netpol_bridge query: {"bridge", "pvid", "untagged", "tagged"}


@dataclass(frozen=True)
class Domain:
    """One L2 domain: a bridge (vlan None) or a VLAN of a VLAN-aware bridge."""

    bridge: str
    vlan: Optional[int] = None

    @property
    def key(self) -> str:
        return self.bridge if self.vlan is None else "%s vlan %d" % (self.bridge, self.vlan)

    @property
    def shown(self) -> str:
        return "bridge %s" % self.bridge if self.vlan is None else "VLAN %d on bridge %s" % (self.vlan, self.bridge)


def _drawn(keys: Sequence[str], salt: str, base: int, space: int) -> Dict[str, int]:
    """A number per key, drawn from its name (stable when other keys come and go), the next free
    one on a collision, in name order."""
    taken: Dict[int, str] = {}
    for key in sorted(set(keys)):
        number = base + int(stable_hash(salt + key), 36) % (space - base)
        while number in taken:
            number = base + (number - base + 1) % (space - base)
        taken[number] = key
    return {key: number for number, key in taken.items()}


def zones(keys: Sequence[str]) -> Dict[str, int]:
    """A conntrack zone per domain key (a bridge's name, or 'BRIDGE vlan N')."""
    return _drawn(keys, "bridge ", ZONE_BASE, ZONE_SPACE)


def marks(keys: Sequence[str]) -> Dict[str, int]:
    """The mark index (1..MARK_MASK) of each VLAN domain key of one hypervisor."""
    if len(set(keys)) > MARK_MASK:
        raise ValueError("%d VLANs with managed VMs on VLAN-aware bridges of one hypervisor: at most %d fit the "
                         "mark bits 0x%x" % (len(set(keys)), MARK_MASK, MARK_MASK))
    return _drawn(keys, "mark ", 1, MARK_MASK + 1)


@dataclass(frozen=True)
class Layout:
    """The L2 domains of one hypervisor's managed bridges and how a packet is assigned to one."""

    plain: Tuple[str, ...]                              # bridges without vlan_filtering
    domains: Tuple[Domain, ...]                         # VLANs with managed VMs, of VLAN-aware bridges
    vm_ports: Tuple[Tuple[str, Domain], ...]            # VM access port -> the domain of its VLAN (raw)
    untagged: Tuple[Tuple[str, Domain], ...]            # non-VM port -> the domain of its PVID (ebtables)
    tagged: Tuple[Tuple[str, Domain], ...]              # non-VM port carrying the domain's VLAN (ebtables)

    @property
    def vlan_bridges(self) -> Tuple[str, ...]:
        return tuple(sorted({d.bridge for d in self.domains}))


def _vm_domains(vm_ports: Mapping[str, str], vlans: Mapping[str, PortVlans]) -> Dict[str, Domain]:
    """The domains of the VLANs of the VM ports on VLAN-aware bridges, by key."""
    domains: Dict[str, Domain] = {}
    for port, bridge in sorted(vm_ports.items()):
        if port in vlans:
            vlan = access_vlan(vlans[port])
            if vlan is None:
                raise ValueError("VM port %s on the VLAN-aware bridge %s is not an access port" % (port, bridge))
            domains[Domain(bridge, vlan).key] = Domain(bridge, vlan)
    return domains


def layout(vm_ports: Mapping[str, str], vlans: Mapping[str, PortVlans]) -> Layout:
    """vm_ports: VM port -> its bridge; vlans: the query's VLANs of every port of the VLAN-aware
    bridges. A VM port found in vlans must be an access port (bridge/ports.py refuses the rest)."""
    domains = _vm_domains(vm_ports, vlans)
    by_vm, untagged, tagged = [], [], []
    for port, facts in sorted(vlans.items()):
        bridge = facts.get("bridge") or vm_ports.get(port)
        pvid = facts.get("pvid")
        home = domains.get(Domain(bridge, int(pvid)).key) if pvid is not None else None
        if port in vm_ports:
            by_vm.append((port, home))
            continue
        if home is not None:
            untagged.append((port, home))
        # a tagged frame of any VLAN the port is a member of enters that VLAN, egress untagged or not
        carried = sorted({int(v) for v in list(facts.get("tagged") or ()) + list(facts.get("untagged") or ())})
        tagged += [(port, domains[Domain(bridge, v).key]) for v in carried if Domain(bridge, v).key in domains]
    aware = {d.bridge for d in domains.values()}
    return Layout(plain=tuple(sorted(set(vm_ports.values()) - aware)),
                  domains=tuple(sorted(domains.values(), key=lambda d: d.key)),
                  vm_ports=tuple(by_vm), untagged=tuple(untagged), tagged=tuple(tagged))


def raw_table(family: str, the_layout: Layout) -> Table:
    """NETPOL-BR-ZONES of one family (family: ipv4 or ipv6)."""
    zone = zones(list(the_layout.plain) + [d.key for d in the_layout.domains])
    mark = marks([d.key for d in the_layout.domains])
    rules: List[str] = []
    for domain in the_layout.domains:
        rules.append("-i %s -m mark --mark 0x%x/0x%x %s %s -j CT --zone %d" % (
            domain.bridge, mark[domain.key], MARK_MASK, NOT_LOCAL,
            comment_match("netpol zone of %s: frames of non-VM ports, by mark" % domain.shown), zone[domain.key]))
    for port, domain in the_layout.vm_ports:
        rules.append("-m physdev --physdev-in %s %s %s -j CT --zone %d" % (
            port, NOT_LOCAL, comment_match("netpol zone of %s: port %s" % (domain.shown, port)), zone[domain.key]))
    for bridge in the_layout.plain:
        rules.append("-i %s %s %s -j CT --zone %d" % (
            bridge, NOT_LOCAL, comment_match("netpol zone of bridge %s" % bridge), zone[bridge]))
    for bridge in the_layout.vlan_bridges:
        rules.append("-i %s -m mark ! --mark 0x0/0x%x %s -j MARK --set-xmark 0x0/0x%x" % (
            bridge, MARK_MASK, comment_match("netpol: clear the VLAN mark of bridge %s" % bridge), MARK_MASK))
    return Table(family, "raw", (Chain(ZONES_CHAIN, tuple(rules)),), (Jump("PREROUTING", ZONES_CHAIN),))


def mark_chain(the_layout: Layout) -> Optional[Chain]:
    """The ebtables nat chain that marks the IPv4/IPv6 frames of managed VLANs entering by non-VM
    ports, port by port; None without such ports. Written as ebtables-nft prints it (the ebtables
    backend compares canonical text)."""
    mark = marks([d.key for d in the_layout.domains])
    rules: List[str] = []
    for port in sorted({p for p, _d in the_layout.untagged + the_layout.tagged}):
        rules += ["-p %s -i %s -j mark --mark-or 0x%x --mark-target CONTINUE" % (ethertype, port, mark[domain.key])
                  for untagged_port, domain in the_layout.untagged if untagged_port == port for ethertype in UNTAGGED]
        rules += ["-p 802_1Q -i %s --vlan-id %d --vlan-encap %s -j mark --mark-or 0x%x --mark-target CONTINUE" % (
            port, domain.vlan, encap, mark[domain.key])
            for tagged_port, domain in the_layout.tagged if tagged_port == port for encap in ENCAPSULATED]
    return Chain(MARK_CHAIN, tuple(rules + ["-j RETURN"])) if rules else None


def with_marks(layer2: Table, the_layout: Layout) -> Table:
    """The hypervisor's ebtables nat table with the mark chain and its jump, when there is one."""
    chain = mark_chain(the_layout)
    if chain is None:
        return layer2
    return Table(layer2.family, layer2.name, layer2.chains + (chain,),
                 layer2.jumps + (Jump("PREROUTING", MARK_CHAIN),))
