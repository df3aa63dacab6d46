# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small interpreter of the compiled HostState: walk our chains for one packet.

It reads the rule text exactly as compile emits it (the iptables-save subset we use)
and looks addresses up in the HostState's ipsets with the kernel's semantics (hash:net:
the most specific entry wins, nomatch entries exclude). Anything outside that subset is
an error, never a guess. Used to test compile against simulate without a kernel.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import HostState, IpSet, Table

BASE_CHAIN = {"ingress": "INPUT", "egress": "OUTPUT"}
PROTOCOL_NUMBERS = {"tcp": "TCP", "udp": "UDP", "sctp": "SCTP", "ipv6-icmp": "ICMPV6"}


@dataclass(frozen=True)
class Packet:
    """A packet as a base chain sees it. iface is the in (ingress) or out (egress) interface."""

    family: int
    direction: str  # ingress or egress
    src: str
    dst: str
    protocol: str = "TCP"  # TCP, UDP, SCTP, ICMPV6
    dport: int = 0
    icmpv6_type: Optional[int] = None
    iface: str = "eth0"
    ctstate: str = "NEW"


@dataclass(frozen=True)
class Outcome:
    allowed: bool  # RETURNed from our chains (the host's own firewall decides next)
    chain: str = ""
    rule: str = ""  # the rule that decided; "" when the packet fell through


class Evaluator:
    def __init__(self, state: HostState):
        self.state = state
        self.sets: Dict[str, _Set] = {s.name: _Set(s) for s in state.sets}
        self._parsed: Dict[str, List[Tuple[str, str]]] = {}

    def evaluate(self, packet: Packet) -> Outcome:
        table = self.state.table("ipv6" if packet.family == 6 else "ipv4")
        chains = {c.name: c.rules for c in table.chains}
        returned: List[Tuple[str, str]] = []  # (chain, rule) of each RETURN taken: the last one decided
        for jump in _jumps(table, BASE_CHAIN[packet.direction]):
            dropped = self._walk(chains, jump, packet, returned, depth=0)
            if dropped is not None:
                return dropped
            if returned and returned[-1][0] == jump:
                break  # RETURN from the base chain's target: back in INPUT/OUTPUT, ours said yes
        chain, rule = returned[-1] if returned else ("", "")
        return Outcome(True, chain, rule)

    def _walk(
        self, chains: Dict[str, Tuple[str, ...]], name: str, packet: Packet, returned: List[Tuple[str, str]], depth: int
    ) -> Optional[Outcome]:
        """An Outcome when a DROP decided; None when the chain returned or fell off its end."""
        if depth > 8 or name not in chains:
            raise ValueError("jump to unknown chain %s" % name)
        for rule in chains[name]:
            tokens = self._parse(rule)
            if not all(self._matches(option, value, packet) for option, value in tokens if option != "-j"):
                continue
            target = dict(tokens).get("-j", "")
            if target == "RETURN":
                returned.append((name, rule))
                return None
            if target == "DROP":
                return Outcome(False, name, rule)
            if target == "NFLOG":
                continue
            dropped = self._walk(chains, target, packet, returned, depth + 1)
            if dropped is not None:
                return dropped
        return None

    def _parse(self, rule: str) -> List[Tuple[str, str]]:
        """(option, value) pairs; module loads (-m x) carry no meaning of their own."""
        if rule not in self._parsed:
            words, pairs = shlex.split(rule), []
            while words:
                option = words.pop(0)
                if option == "--match-set":
                    pairs.append((option, words.pop(0) + " " + words.pop(0)))
                else:
                    pairs.append((option, words.pop(0)))
            self._parsed[rule] = [(o, v) for o, v in pairs if o != "-m"]
        return self._parsed[rule]

    def _matches(self, option: str, value: str, packet: Packet) -> bool:
        if option in ("-i", "-o"):
            return packet.iface == value
        if option in ("-s", "-d"):
            address = packet.src if option == "-s" else packet.dst
            return ipaddress.ip_address(address) in ipaddress.ip_network(value)
        if option == "-p":
            return packet.protocol == PROTOCOL_NUMBERS[value]
        if option == "--dport":
            return _in_range(packet.dport, value)
        if option == "--dports":
            return any(_in_range(packet.dport, v) for v in value.split(","))
        if option == "--icmpv6-type":
            return packet.icmpv6_type == int(value)
        if option == "--ctstate":
            return packet.ctstate in value.split(",")
        if option == "--match-set":
            name, flags = value.split(" ")
            return self.sets[name].contains(packet, flags)
        if option in ("--comment", "--limit", "--limit-burst", "--nflog-prefix", "--nflog-group"):
            return True  # no effect on the verdict (a rate limit only thins the log)
        raise ValueError("the evaluator does not know %s" % option)


def _jumps(table: Table, base: str) -> List[str]:
    return [j.target for j in sorted(table.jumps, key=lambda j: j.position) if j.chain == base and not j.match]


def _in_range(port: int, text: str) -> bool:
    bounds = text.split(":")
    return int(bounds[0]) <= port <= int(bounds[-1])


class _Set:
    """One ipset with the kernel's matching rules for the types compile emits."""

    def __init__(self, ipset: IpSet):
        self.type = ipset.type
        self.entries = {m.entry for m in ipset.members if not m.nomatch}
        self.networks = sorted(
            ((ipaddress.ip_network(m.entry), m.nomatch) for m in ipset.members if ipset.type == "hash:net"),
            key=lambda item: -item[0].prefixlen,
        )

    def contains(self, packet: Packet, flags: str) -> bool:
        address = packet.src if flags.split(",")[0] == "src" else packet.dst
        if self.type == "hash:ip":
            return str(ipaddress.ip_address(address)) in self.entries
        if self.type == "hash:net":
            ip = ipaddress.ip_address(address)
            for network, nomatch in self.networks:  # most specific first
                if ip.version == network.version and ip in network:
                    return not nomatch
            return False
        if self.type == "hash:ip,port":
            if flags != "dst,dst":
                raise ValueError("compile only matches destination address and port")
            entry = "%s,%s:%s" % (ipaddress.ip_address(address), packet.protocol.lower(), packet.dport)
            return entry in self.entries
        raise ValueError("the evaluator does not know set type %s" % self.type)


def evaluate(state: HostState, packet: Packet) -> Outcome:
    return Evaluator(state).evaluate(packet)
