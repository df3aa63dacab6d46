# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which established connections a host's state denies: the conntrack entries to delete.

Our chains RETURN RELATED,ESTABLISHED packets first, so a connection that was allowed when it
started survives a policy that no longer allows it for as long as its conntrack entry lives (days,
for an idle TCP connection). Deleting exactly the entries whose first packet the state now denies
makes their next packet NEW again, and the rules decide it like any new connection.

Each entry is judged by its original direction, as the first packet was: towards one of the host's
own addresses it is ingress, from one of them egress; node-local (both ends ours) and forwarded
(neither end ours) traffic is never ours to judge in host mode. Pure Python.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import AbstractSet, Any, Iterable, List, Optional

from ansible_collections.netpol.fleet.plugins.module_utils.engine.evaluate import Evaluator, Packet
from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import HostState

PROTOCOLS = ("TCP", "UDP", "SCTP")  # entries of other protocols (ICMP...) are left alone


@dataclass(frozen=True)
class Flow:
    """One conntrack entry by its original tuple, and the zone it lives in."""

    family: int  # 4 or 6
    protocol: str  # TCP, UDP, SCTP
    src: str
    dst: str
    sport: int
    dport: int
    zone: int = 0

    def __str__(self) -> str:
        ends = ("%s:%d", "%s:%d") if self.family == 4 else ("[%s]:%d", "[%s]:%d")
        return "%s %s -> %s zone %d" % (
            self.protocol.lower(), ends[0] % (self.src, self.sport), ends[1] % (self.dst, self.dport), self.zone)


def first_packet(flow: Flow, own: AbstractSet[Any]) -> Optional[Packet]:
    """The packet that opened the flow, as this host's INPUT or OUTPUT saw it; None when not ours.
    `own` holds the host's addresses as ipaddress objects."""
    inbound, outbound = ipaddress.ip_address(flow.dst) in own, ipaddress.ip_address(flow.src) in own
    if inbound == outbound or flow.protocol not in PROTOCOLS:
        return None
    return Packet(flow.family, "ingress" if inbound else "egress", flow.src, flow.dst, flow.protocol, flow.dport)


@dataclass(frozen=True)
class Denied:
    """A flow the state drops now, the direction its first packet went, and the rule that drops it."""

    flow: Flow
    direction: str  # ingress or egress
    chain: str
    rule: str


def denied_flows(state: HostState, flows: Iterable[Flow], local: Iterable[str]) -> List[Denied]:
    """The flows whose first packet `state` now drops; `local` are the host's own addresses."""
    evaluator, own = Evaluator(state), {ipaddress.ip_address(a) for a in local}
    denied = []
    for flow in flows:
        packet = first_packet(flow, own)
        if packet is not None:
            outcome = evaluator.evaluate(packet)
            if not outcome.allowed:
                denied.append(Denied(flow, packet.direction, outcome.chain, outcome.rule))
    return denied
