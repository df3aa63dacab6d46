# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The policy IR: what parse produces and every later stage consumes.

Frozen dataclasses only, standard library only. Values are normalised by parse
(CIDRs with host bits cleared, protocols upper case, labels as sorted pairs), so two
equal inputs give equal objects and deterministic names downstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple, Union

INGRESS = "Ingress"
EGRESS = "Egress"
PROTOCOLS = ("TCP", "UDP", "SCTP")
METADATA_NAME = "kubernetes.io/metadata.name"

Labels = Tuple[Tuple[str, str], ...]


def labels_of(mapping: Optional[Mapping[str, str]]) -> Labels:
    """Labels as a sorted tuple of pairs, the IR's hashable form of a dict."""
    return tuple(sorted((mapping or {}).items()))


@dataclass(frozen=True)
class Requirement:
    """One matchExpressions entry: key, operator (In, NotIn, Exists, DoesNotExist), values."""

    key: str
    operator: str
    values: Tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "In":
            return present and labels[self.key] in self.values
        if self.operator == "NotIn":
            return not present or labels[self.key] not in self.values
        if self.operator == "Exists":
            return present
        if self.operator == "DoesNotExist":
            return not present
        raise ValueError("unknown operator %r" % self.operator)


@dataclass(frozen=True)
class LabelSelector:
    """matchLabels and matchExpressions, ANDed. The empty selector matches everything."""

    match_labels: Labels = ()
    match_expressions: Tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            r.matches(labels) for r in self.match_expressions
        )

    @property
    def is_empty(self) -> bool:
        return not self.match_labels and not self.match_expressions


@dataclass(frozen=True)
class IPBlock:
    """A CIDR minus its exceptions, all normalised, all of the CIDR's family."""

    cidr: str
    excepts: Tuple[str, ...] = ()

    @property
    def family(self) -> int:
        return 6 if ":" in self.cidr else 4


@dataclass(frozen=True)
class Peer:
    """One from/to entry. Either ip_block, or at least one of the two selectors.

    pod_selector alone: pods of the policy's namespace; namespace_selector alone: every
    pod of the matching namespaces; both: ANDed.
    """

    pod_selector: Optional[LabelSelector] = None
    namespace_selector: Optional[LabelSelector] = None
    ip_block: Optional[IPBlock] = None


@dataclass(frozen=True)
class PortSpec:
    """protocol (TCP, UDP, SCTP); port None = every port; a str port is a named port."""

    protocol: str = "TCP"
    port: Union[int, str, None] = None
    end_port: Optional[int] = None


@dataclass(frozen=True)
class Rule:
    """An ingress or egress rule. Empty peers = all peers; empty ports = all ports."""

    peers: Tuple[Peer, ...] = ()
    ports: Tuple[PortSpec, ...] = ()


@dataclass(frozen=True)
class Policy:
    """A validated NetworkPolicy with its defaults applied (policy_types always explicit)."""

    namespace: str
    name: str
    pod_selector: LabelSelector
    policy_types: Tuple[str, ...]
    ingress: Tuple[Rule, ...] = ()
    egress: Tuple[Rule, ...] = ()
    origin: str = ""  # file (and document index) or inventory variable, for messages

    @property
    def key(self) -> str:
        return "%s/%s" % (self.namespace, self.name)


@dataclass(frozen=True)
class NamedPort:
    name: str
    port: int
    protocol: str = "TCP"


@dataclass(frozen=True)
class Workload:
    """Something policies select: a host (host mode) or a VM on a hypervisor (bridge mode).

    host is the inventory host that enforces for it: itself in host mode. interface and
    mac are set in bridge mode only, and so are the anti-spoofing knobs of the VM's port:
    antispoof (full, mac_only or off) and allowed_addresses (extra sources it may send from,
    addresses or CIDRs; never part of addresses, so never in a peer set).
    """

    name: str
    namespace: str
    labels: Labels
    addresses: Tuple[str, ...]
    ports: Tuple[NamedPort, ...] = ()
    host: str = ""
    interface: Optional[str] = None
    mac: Optional[str] = None
    antispoof: str = "full"
    allowed_addresses: Tuple[str, ...] = ()

    @property
    def label_map(self) -> Mapping[str, str]:
        return dict(self.labels)

    @property
    def enforcer(self) -> str:
        """The inventory host whose firewall enforces for this workload."""
        return self.host or self.name

    def addresses_of(self, family: int) -> Tuple[str, ...]:
        return tuple(a for a in self.addresses if (":" in a) == (family == 6))

    def resolve_port(self, name: str, protocol: str) -> Optional[int]:
        for p in self.ports:
            if p.name == name and p.protocol == protocol:
                return p.port
        return None


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: Labels  # kubernetes.io/metadata.name always included

    @property
    def label_map(self) -> Mapping[str, str]:
        return dict(self.labels)


@dataclass(frozen=True)
class Fleet:
    """Everything selectors resolve against. nodes: host -> the host's own addresses."""

    workloads: Tuple[Workload, ...]
    namespaces: Tuple[Namespace, ...]
    node_addresses: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class PrivilegedRule:
    """A static path no policy may cut (GUIDE section 4).

    direction 'ingress' or 'egress'; protocol TCP, UDP, SCTP, ICMPV6 or ALL; ports a
    (first, last) range or None for every port; cidrs empty = from/to anywhere; local_cidrs
    the host's own side (ingress: destination), empty = every host, so a fleet-wide rule can
    hold only on the hosts that own those addresses (a DNS resolver in the fleet).
    """

    name: str
    direction: str
    protocol: str = "TCP"
    ports: Optional[Tuple[int, int]] = None
    cidrs: Tuple[str, ...] = ()
    icmpv6_types: Tuple[int, ...] = ()
    local_cidrs: Tuple[str, ...] = ()


@dataclass(frozen=True)
class LogOptions:
    """NFLOG for denied packets, rate limited."""

    group: int = 100
    limit: str = "10/min"
    burst: int = 5


@dataclass(frozen=True)
class CompileOptions:
    privileged: Tuple[PrivilegedRule, ...] = ()
    log: Optional[LogOptions] = None
    # Move our jumps back to position 1 on every run, above foreign rules inserted since (hoststate.Jump).
    enforce_jump_position: bool = False
    # Bridge mode: drop packets of managed bridges' ports that are neither VMs nor uplinks.
    bridge_drop_unmanaged: bool = False
    extra: Tuple[Tuple[str, str], ...] = field(default_factory=tuple)
