# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Layer-2 anti-spoofing for VMs on bridge ports: the ebtables nat table of one hypervisor.

A policy that matches source addresses is worthless while a VM can forge its source MAC, IP or
ARP replies. Each managed port gets its checks in ebtables `nat PREROUTING`, which sees a frame
before the bridge learns its source MAC (in `filter FORWARD` the forged MAC would already sit in
the FDB on the attacker's port):

    nat PREROUTING  -j NETPOL-L2           one jump, first
    NETPOL-L2       -i PORT -j NETPOL-L2-<hash>      per managed port, in port order
    NETPOL-L2-<h>   source MAC is the VM's; no 802.1Q / 802.1ad tags; ARP sender MAC and IP are
                    the VM's (0.0.0.0 probes pass); RARP passes (announce after live migration);
                    no DHCP server replies; DHCP discover from 0.0.0.0 passes; IPv4 source one of
                    the VM's; no router advertisements, no DHCPv6 server replies; DAD/RS/MLD from
                    :: pass; IPv6 source one of the VM's (its EUI-64 link-local included);
                    everything else goes to the deny chain. What passes RETURNs: the hypervisor's
                    own nat rules still have their say.
    NETPOL-L2D-<h>  NFLOG within a rate limit, prefix naming the workload, then DROP.

Per workload: `antispoof: full` (default), `mac_only` (the MAC, tags, DHCP/RA servers are
checked, IP sources are not: for a VM whose addresses are not known yet), `off` (the port is not
checked); `allowed_addresses` are extra sources the VM may send from (allowed-address pairs). They
only widen what this port may send: they never enter a peer set, so no policy treats traffic from
them as the VM's.

Every rule is written in the form ebtables-nft prints, so the ebtables backend compares it as it is.
Pure Python, standard library only.
"""

from __future__ import annotations

import ipaddress
from typing import List, Optional, Sequence, Tuple

from ansible_collections.netpol.fleet.plugins.module_utils.ebtables.canonical import canonical
from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import Chain, Jump, Table
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import LogOptions, Workload
from ansible_collections.netpol.fleet.plugins.module_utils.engine.names import NFLOG_PREFIX_MAX, clamp, stable_hash

DISPATCH_CHAIN = "NETPOL-L2"
PORT_CHAIN = "NETPOL-L2-"
DENY_CHAIN = "NETPOL-L2D-"
FULL, MAC_ONLY, OFF = "full", "mac_only", "off"
MODES = (FULL, MAC_ONLY, OFF)
TAGGED = ("802_1Q", "S-TAG")  # 0x8100 and 0x88a8, as ebtables names them
# Sent from the unspecified address before the guest has one: DAD, router solicitation, MLDv2 report.
FROM_UNSPECIFIED = ("neighbour-solicitation", "router-solicitation", "143/0:255")


def antispoof_table(workloads: Sequence[Workload], log: Optional[LogOptions] = None) -> Table:
    """The ebtables nat table for one hypervisor's VMs; no chains at all when no port is checked."""
    checked = sorted((w for w in workloads if w.interface and w.antispoof != OFF), key=lambda w: w.interface)
    if not checked:
        return Table(family="bridge", name="nat")
    dispatch = Chain(DISPATCH_CHAIN, tuple("-i %s -j %s" % (w.interface, port_chain(w)) for w in checked))
    chains = [dispatch]
    for workload in checked:
        chains.append(Chain(port_chain(workload), port_rules(workload)))
        chains.append(Chain(deny_chain(workload), deny_rules(workload, log)))
    return Table(family="bridge", name="nat", chains=tuple(chains), jumps=(Jump("PREROUTING", DISPATCH_CHAIN),))


def port_chain(workload: Workload) -> str:
    return PORT_CHAIN + stable_hash("l2/%s" % workload.interface)


def deny_chain(workload: Workload) -> str:
    return DENY_CHAIN + stable_hash("l2/%s" % workload.interface)


def port_rules(workload: Workload) -> Tuple[str, ...]:
    if not workload.mac:
        raise ValueError("workload %s/%s on %s: anti-spoofing needs its MAC"
                         % (workload.namespace, workload.name, workload.interface))
    mac, deny = mac_text(workload.mac), "-j %s" % deny_chain(workload)
    rules = ["-s ! %s %s" % (mac, deny)] + ["-p %s %s" % (tag, deny) for tag in TAGGED]
    rules += _arp(workload, mac, deny) + ["-p RARP -j RETURN"]
    rules += _ipv4(workload, deny) + _ipv6(workload, deny)
    return tuple(rules + [deny])


def _arp(workload: Workload, mac: str, deny: str) -> List[str]:
    if workload.antispoof == MAC_ONLY:
        return ["-p ARP --arp-mac-src %s -j RETURN" % mac, "-p ARP %s" % deny]
    senders = _sources(workload, 4) + ["0.0.0.0"]  # RFC 5227 probes come from 0.0.0.0
    return ["-p ARP --arp-ip-src %s --arp-mac-src %s -j RETURN" % (ip, mac) for ip in senders] + ["-p ARP %s" % deny]


def _ipv4(workload: Workload, deny: str) -> List[str]:
    # A DHCP server reply (from port 67) from a VM is a rogue server, whatever its source address.
    rules = ["-p IPv4 --ip-proto udp --ip-sport 67 %s" % deny]
    if workload.antispoof == MAC_ONLY:
        return rules + ["-p IPv4 -j RETURN"]
    rules.append("-p IPv4 --ip-src 0.0.0.0 --ip-dst 255.255.255.255 --ip-proto udp --ip-sport 68 --ip-dport 67 -j RETURN")
    rules += ["-p IPv4 --ip-src %s -j RETURN" % ip for ip in _sources(workload, 4)]
    return rules + ["-p IPv4 %s" % deny]


def _ipv6(workload: Workload, deny: str) -> List[str]:
    rules = ["-p IPv6 --ip6-proto ipv6-icmp --ip6-icmp-type router-advertisement %s" % deny,
             "-p IPv6 --ip6-proto udp --ip6-sport 547 %s" % deny]
    if workload.antispoof == MAC_ONLY:
        return rules + ["-p IPv6 -j RETURN"]
    rules += ["-p IPv6 --ip6-src :: --ip6-proto ipv6-icmp --ip6-icmp-type %s -j RETURN" % t for t in FROM_UNSPECIFIED]
    sources = [link_local(workload.mac or "")] + _sources(workload, 6)
    rules += ["-p IPv6 --ip6-src %s -j RETURN" % ip for ip in dict.fromkeys(sources)]
    return rules + ["-p IPv6 %s" % deny]


def _sources(workload: Workload, family: int) -> List[str]:
    """The VM's own addresses of one family, then its allowed addresses, as ebtables prints them."""
    own = [str(ipaddress.ip_interface(a).ip) for a in workload.addresses]
    extra = [_network_text(a) for a in workload.allowed_addresses]
    found = [a for a in own + extra if ipaddress.ip_network(a, strict=False).version == family]
    return list(dict.fromkeys(found))


def _network_text(cidr: str) -> str:
    net = ipaddress.ip_network(cidr, strict=False)
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def deny_rules(workload: Workload, log: Optional[LogOptions]) -> Tuple[str, ...]:
    if log is None:
        return ("-j DROP",)
    # Limit and NFLOG alone in their rule: after another match ebtables-nft 1.8.9 prints no limit.
    prefix = clamp("netpol L2 deny %s/%s" % (workload.namespace, workload.name), NFLOG_PREFIX_MAX - 1)
    return (
        '--limit %s --limit-burst %d --nflog-prefix "%s" --nflog-group %d -j DROP'
        % (_rate(log.limit), log.burst, prefix.replace('"', "_"), log.group),
        "-j DROP",
    )


def _rate(limit: str) -> str:
    """An iptables-style rate (10/min, 5/minute, 1/second) as ebtables-nft prints it."""
    return canonical("--limit %s" % limit).split()[1]


def mac_text(mac: str) -> str:
    """A MAC as ebtables-save prints it after -s: lowercase, two digits per octet."""
    return ":".join("%02x" % int(part, 16) for part in mac.split(":"))


def link_local(mac: str) -> str:
    """The modified EUI-64 link-local address of a MAC (RFC 4291 appendix A), which a guest forms
    unless it uses stable-privacy addresses (then list its link-local in allowed_addresses)."""
    octets = [int(part, 16) for part in mac.split(":")]
    eui = [octets[0] ^ 0x02] + octets[1:3] + [0xFF, 0xFE] + octets[3:]
    return str(ipaddress.IPv6Address(bytes([0xFE, 0x80] + [0] * 6 + eui)))
