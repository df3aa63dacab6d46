# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ipsets peers become, their members resolved by selectors.Resolver.

Every distinct selector is resolved once per compile and every distinct set built once,
then shared by all hosts whose rules use it. Pure Python, standard library only.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
from typing import Dict, Iterable, List, Optional, Tuple

from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import IpSet, SetMember
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import IPBlock, LabelSelector, Peer, Workload
from ansible_collections.netpol.fleet.plugins.module_utils.engine.names import set_label, set_name
from ansible_collections.netpol.fleet.plugins.module_utils.engine.selectors import EVERYTHING, Resolver

DEFAULT_MAXELEM = 65536
# hash:net cannot hold a /0: the two halves of the address space stand in for it.
WHOLE_SPACE = {4: ("0.0.0.0/1", "128.0.0.0/1"), 6: ("::/1", "8000::/1")}
SET_FAMILY = {4: "inet", 6: "inet6"}


def selector_key(selector: Optional[LabelSelector]) -> str:
    """A canonical text for a selector; None and {} both mean 'everything' here."""
    if selector is None:
        return "*"
    labels = ",".join("%s=%s" % pair for pair in selector.match_labels)
    expressions = ",".join(
        "%s %s (%s)" % (r.key, r.operator, ",".join(sorted(r.values))) for r in selector.match_expressions
    )
    return "{%s|%s}" % (labels, expressions)


def peer_key(policy_namespace: str, peer: Optional[Peer]) -> str:
    """What a peer selects, as text: the identity of its set, independent of members."""
    if peer is None:
        return "any"
    if peer.ip_block is not None:
        return "cidr %s except %s" % (peer.ip_block.cidr, ",".join(sorted(peer.ip_block.excepts)))
    if peer.namespace_selector is None:
        return "pods %s in namespace %s" % (selector_key(peer.pod_selector), policy_namespace)
    return "pods %s in namespaces %s" % (selector_key(peer.pod_selector), selector_key(peer.namespace_selector))


@functools.lru_cache(maxsize=None)
def host_entry(address: str) -> str:
    """An address as `ipset save` prints it (canonical, IPv6 compressed)."""
    return str(ipaddress.ip_address(address))


def net_entry(cidr: str) -> str:
    """A prefix as `ipset save` prints it in a hash:net set: host prefixes bare."""
    network = ipaddress.ip_network(cidr, strict=False)
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


class SetBook:
    """Builds each distinct ipset once; None stands for a set that would be empty."""

    def __init__(self, resolver: Resolver):
        self.resolver = resolver
        self._sets: Dict[Tuple[int, str], Optional[IpSet]] = {}

    def _memo(self, family: int, key: str, kind: str, build) -> Optional[IpSet]:
        if (family, key) not in self._sets:
            members = build()
            self._sets[(family, key)] = _ipset(family, key, kind, members) if members else None
        return self._sets[(family, key)]

    def peer_set(self, family: int, policy_namespace: str, peer: Peer) -> Optional[IpSet]:
        """hash:ip of a selector peer's addresses, or hash:net of an ipBlock with nomatch excepts."""
        if peer.ip_block is not None:
            if peer.ip_block.family != family:
                return None
            return self._memo(family, peer_key(policy_namespace, peer), "hash:net", lambda: _block_members(peer.ip_block))
        workloads = self.resolver.peer(policy_namespace, peer)
        return self._memo(family, peer_key(policy_namespace, peer), "hash:ip", lambda: _address_members(workloads, family))

    def workload_set(self, family: int, key: str, workloads: Iterable[Workload]) -> Optional[IpSet]:
        """hash:ip of the given workloads' addresses, named by key."""
        return self._memo(family, key, "hash:ip", lambda: _address_members(workloads, family))

    def address_set(self, family: int, key: str, addresses: Iterable[str]) -> Optional[IpSet]:
        """hash:ip of the given addresses (of both families; the set keeps this family's), named by key."""
        wanted = [a for a in addresses if (":" in a) == (family == 6)]
        return self._memo(family, key, "hash:ip", lambda: [SetMember(host_entry(a)) for a in sorted(set(wanted))])

    def named_port_set(
        self, family: int, policy_namespace: str, peer: Optional[Peer], protocol: str, port_name: str
    ) -> Optional[IpSet]:
        """hash:ip,port of (address, protocol:number) for each destination declaring the named port."""
        key = "%s port %s/%s" % (peer_key(policy_namespace, peer), protocol, port_name)
        workloads = self.resolver.select(EVERYTHING) if peer is None else self.resolver.peer(policy_namespace, peer)
        return self._memo(family, key, "hash:ip,port", lambda: _port_members(workloads, family, protocol, port_name))


def _ipset(family: int, key: str, kind: str, members: List[SetMember]) -> IpSet:
    options: Tuple[Tuple[str, str], ...] = ()
    if len(members) > DEFAULT_MAXELEM:
        options = (("maxelem", str(1 << (len(members) - 1).bit_length())),)
    ordered = sorted(members, key=lambda m: m.entry)
    # The first member carries the set's label, the key its name hashes: one comment per set, not per member.
    labelled = (dataclasses.replace(ordered[0], comment=set_label(key)),) + tuple(ordered[1:])
    return IpSet(set_name(family, key), kind, SET_FAMILY[family], labelled, options)


def _address_members(workloads: Iterable[Workload], family: int) -> List[SetMember]:
    entries = {host_entry(a) for w in workloads for a in w.addresses_of(family)}
    return [SetMember(e) for e in entries]


def _block_members(block: IPBlock) -> List[SetMember]:
    if ipaddress.ip_network(block.cidr).prefixlen == 0:
        cidrs: Tuple[str, ...] = WHOLE_SPACE[block.family]
    else:
        cidrs = (block.cidr,)
    return [SetMember(net_entry(c)) for c in cidrs] + [SetMember(net_entry(e), nomatch=True) for e in block.excepts]


def _port_members(workloads: Iterable[Workload], family: int, protocol: str, port_name: str) -> List[SetMember]:
    entries = set()
    for workload in workloads:
        number = workload.resolve_port(port_name, protocol)
        if number is not None:
            entries.update("%s,%s:%d" % (host_entry(a), protocol.lower(), number) for a in workload.addresses_of(family))
    return [SetMember(e) for e in entries]
