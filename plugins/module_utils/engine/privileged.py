# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Privileged static rules (GUIDE section 4): the paths no policy may cut.

Pure Python, standard library only. The enforce role's variables come in as a plain
mapping; out come ir.PrivilegedRule tuples for CompileOptions and the warnings a run
must show when the controller would be left without a path. A user rule with the name
of a default replaces it; netpol_privileged_exclude drops defaults by name;
netpol_privileged_defaults: false keeps only the user's rules.
"""

from __future__ import annotations

import difflib
import ipaddress
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import PrivilegedRule
from ansible_collections.netpol.fleet.plugins.module_utils.engine.validate import read_address_or_cidr

DIRECTIONS = ("ingress", "egress")
PROTOCOLS = ("TCP", "UDP", "SCTP", "ICMPV6", "ALL")
RULE_FIELDS = ("name", "direction", "protocol", "ports", "cidrs", "icmpv6_types")

# The address-list variables: every one is read by the same grammar as ipBlock.cidr.
CIDR_VARIABLES = ("netpol_controller_addresses", "netpol_management_cidrs", "netpol_admin_cidrs",
                  "netpol_dns_resolvers", "netpol_control_plane_addresses", "netpol_node_addresses")
# Every default rule's name, whether or not this run's inventory makes it: an exclude of another
# name is a typo that would leave the rule it meant in place.
DEFAULT_NAMES = (
    "ssh-management", "kube-apiserver", "kube-apiserver-out", "etcd", "etcd-out", "kubelet", "kubelet-out",
    "dns-udp", "dns-tcp", "dns-server-udp", "dns-server-tcp", "dhcp-client", "dhcp-client-reply", "dhcpv6-client", "dhcpv6-client-reply",
)

KUBE_APISERVER = (6443, 6443)
ETCD = (2379, 2380)
KUBELET = (10250, 10250)


class PrivilegedError(ValueError):
    """Every problem found in the privileged-rule variables, each naming variable and field."""

    def __init__(self, errors: Sequence[str]):
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


def rules_from_vars(variables: Mapping[str, Any]) -> Tuple[PrivilegedRule, ...]:
    """The privileged rules a run enforces: defaults merged with the user's, by name.

    Raises PrivilegedError with every problem of every variable at once.
    """
    errors: List[str] = []
    user_rules: Tuple[PrivilegedRule, ...] = ()
    try:
        address_variables(variables)
    except PrivilegedError as e:
        errors += e.errors
    try:
        user_rules = _user_rules(variables.get("netpol_privileged_rules") or [])
    except PrivilegedError as e:
        errors += e.errors
    excluded: set = set()
    try:
        excluded = _excluded(variables.get("netpol_privileged_exclude") or [])
    except PrivilegedError as e:
        errors += e.errors
    if errors:
        raise PrivilegedError(errors)
    defaults = default_rules(variables) if variables.get("netpol_privileged_defaults", True) else ()
    replaced = {rule.name for rule in user_rules}
    kept = tuple(r for r in defaults if r.name not in excluded and r.name not in replaced)
    return kept + user_rules


def address_variables(variables: Mapping[str, Any]) -> Dict[str, Tuple[str, ...]]:
    """Each address-list variable, normalised; PrivilegedError naming every bad entry."""
    errors: List[str] = []
    found = {name: _checked_cidrs(variables.get(name) or [], name, errors) for name in CIDR_VARIABLES}
    if errors:
        raise PrivilegedError(errors)
    return found


def _excluded(names: Sequence[Any]) -> set:
    errors = []
    for index, name in enumerate(names):
        if name not in DEFAULT_NAMES:
            close = difflib.get_close_matches(str(name), DEFAULT_NAMES, n=1)
            hint = " (did you mean %r?)" % close[0] if close else ""
            errors.append("netpol_privileged_exclude[%d]: %r is not the name of a default privileged rule%s"
                          % (index, name, hint))
    if errors:
        raise PrivilegedError(errors)
    return set(names)


def default_rules(variables: Mapping[str, Any]) -> Tuple[PrivilegedRule, ...]:
    """Safe defaults; rules whose peers are unknown (no controller, no control plane) are left out.

    ICMPv6 neighbour discovery is not among them: compile keeps it in every host's base
    chains, before anything a user can configure, because IPv6 breaks without it.
    """
    cidrs = address_variables(variables)
    admins = cidrs["netpol_admin_cidrs"]
    management = cidrs["netpol_controller_addresses"] + cidrs["netpol_management_cidrs"]
    control_plane = cidrs["netpol_control_plane_addresses"]
    nodes = cidrs["netpol_node_addresses"]
    resolvers = cidrs["netpol_dns_resolvers"]
    ssh = int(variables.get("netpol_ssh_port", 22))
    rules: List[PrivilegedRule] = []
    if management:
        rules.append(PrivilegedRule("ssh-management", "ingress", "TCP", (ssh, ssh), management))
    if control_plane:
        rules += _kubernetes_rules(control_plane, nodes, admins)
    rules += [
        PrivilegedRule("dns-udp", "egress", "UDP", (53, 53), resolvers),
        PrivilegedRule("dns-tcp", "egress", "TCP", (53, 53), resolvers),
    ]
    rules += _resolver_rules(resolvers, nodes)
    if variables.get("netpol_privileged_dhcp", True):
        rules += [
            PrivilegedRule("dhcp-client", "egress", "UDP", (67, 67)),
            PrivilegedRule("dhcp-client-reply", "ingress", "UDP", (68, 68)),
            PrivilegedRule("dhcpv6-client", "egress", "UDP", (547, 547)),
            PrivilegedRule("dhcpv6-client-reply", "ingress", "UDP", (546, 546)),
        ]
    return tuple(rules)


def _resolver_rules(resolvers: Tuple[str, ...], nodes: Tuple[str, ...]) -> List[PrivilegedRule]:
    """Ingress on 53 at the resolvers that are fleet hosts: the egress rules alone keep DNS
    only to resolvers outside the fleet, a deny-all on the resolver host would cut it.

    From every fleet host (they are the clients the egress rules let out); on the hosts that
    own a resolver address only (local_cidrs), so no other host opens 53.
    """
    in_fleet = tuple(r for r in resolvers if any(_contains(r, node) for node in nodes))
    if not in_fleet:
        return []
    return [
        PrivilegedRule("dns-server-udp", "ingress", "UDP", (53, 53), nodes, local_cidrs=in_fleet),
        PrivilegedRule("dns-server-tcp", "ingress", "TCP", (53, 53), nodes, local_cidrs=in_fleet),
    ]


def _contains(cidr: str, address: str) -> bool:
    network, ip = ipaddress.ip_network(cidr), ipaddress.ip_network(address, strict=False)
    return network.version == ip.version and ip.subnet_of(network)


def _kubernetes_rules(
    control_plane: Tuple[str, ...], nodes: Tuple[str, ...], admins: Tuple[str, ...]
) -> List[PrivilegedRule]:
    """kube-apiserver from nodes and admins; etcd and kubelet between control-plane hosts.

    The rules hold for every host (CompileOptions are fleet-wide), so each is scoped by
    its peers' addresses: opening 6443 from nodes on a worker reaches nothing there.
    """
    rules = [
        PrivilegedRule("kube-apiserver", "ingress", "TCP", KUBE_APISERVER, _union(nodes, control_plane, admins)),
        PrivilegedRule("kube-apiserver-out", "egress", "TCP", KUBE_APISERVER, control_plane),
        PrivilegedRule("etcd", "ingress", "TCP", ETCD, control_plane),
        PrivilegedRule("etcd-out", "egress", "TCP", ETCD, control_plane),
        PrivilegedRule("kubelet", "ingress", "TCP", KUBELET, control_plane),
        PrivilegedRule("kubelet-out", "egress", "TCP", KUBELET, _union(nodes, control_plane)),
    ]
    return rules


def lockout_warnings(
    rules: Iterable[PrivilegedRule], controller_addresses: Sequence[str], ssh_port: int = 22
) -> List[str]:
    """Why this configuration could cut the controller's own session, if it could."""
    if not controller_addresses:
        return [
            "netpol: the controller's address is unknown (no SSH_CLIENT, netpol_controller_addresses "
            "empty): a deny-all ingress policy could cut management; set netpol_controller_addresses "
            "or netpol_management_cidrs"
        ]
    ingress = [r for r in rules if r.direction == "ingress"]
    return [
        "netpol: no privileged rule admits SSH (TCP %d) from the controller at %s: a policy that "
        "isolates a host's ingress would cut the controller's session" % (ssh_port, address)
        for address in controller_addresses
        if not any(admits(rule, address, "TCP", ssh_port) for rule in ingress)
    ]


def admits(rule: PrivilegedRule, address: str, protocol: str, port: int) -> bool:
    """Whether the rule lets a packet of protocol to port from/to address through."""
    if rule.protocol not in (protocol, "ALL"):
        return False
    if rule.ports is not None and not rule.ports[0] <= port <= rule.ports[1]:
        return False
    if not rule.cidrs:
        return True
    ip = ipaddress.ip_address(address)
    return any(ip in ipaddress.ip_network(c) for c in rule.cidrs if ipaddress.ip_network(c).version == ip.version)


def rule_to_dict(rule: PrivilegedRule) -> Dict[str, Any]:
    """A rule as the variables spell it, for reports."""
    return {
        "name": rule.name,
        "direction": rule.direction,
        "protocol": rule.protocol,
        "ports": list(rule.ports) if rule.ports else None,
        "cidrs": list(rule.cidrs),
        "icmpv6_types": list(rule.icmpv6_types),
        "local_cidrs": list(rule.local_cidrs),
    }


def _user_rules(entries: Sequence[Any]) -> Tuple[PrivilegedRule, ...]:
    errors: List[str] = []
    rules: List[PrivilegedRule] = []
    for index, entry in enumerate(entries):
        where = "netpol_privileged_rules[%d]" % index
        try:
            rules.append(_user_rule(entry, where))
        except PrivilegedError as e:
            errors += e.errors
    names = [r.name for r in rules]
    errors += ["netpol_privileged_rules: duplicate name %r" % n for n in sorted(set(names)) if names.count(n) > 1]
    if errors:
        raise PrivilegedError(errors)
    return tuple(rules)


def _user_rule(entry: Any, where: str) -> PrivilegedRule:
    if not isinstance(entry, Mapping):
        raise PrivilegedError(["%s: must be a mapping with name and direction" % where])
    errors = ["%s.%s: unknown field" % (where, k) for k in entry if k not in RULE_FIELDS]
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        errors.append("%s.name: required, a non-empty string" % where)
    direction = str(entry.get("direction", "")).lower()
    if direction not in DIRECTIONS:
        errors.append("%s.direction: %r is not one of ingress, egress" % (where, entry.get("direction")))
    protocol = str(entry.get("protocol", "TCP")).upper()
    if protocol not in PROTOCOLS:
        errors.append("%s.protocol: %r is not one of %s" % (where, entry.get("protocol"), ", ".join(PROTOCOLS)))
    ports = _ports(entry.get("ports"), "%s.ports" % where, errors)
    cidrs = _checked_cidrs(entry.get("cidrs") or [], "%s.cidrs" % where, errors)
    types = _icmpv6_types(entry.get("icmpv6_types") or [], "%s.icmpv6_types" % where, errors)
    if ports is not None and protocol in ("ICMPV6", "ALL"):
        errors.append("%s.ports: not allowed with protocol %s" % (where, protocol))
    if types and protocol != "ICMPV6":
        errors.append("%s.icmpv6_types: only with protocol ICMPV6" % where)
    if errors:
        raise PrivilegedError(errors)
    return PrivilegedRule(name, direction, protocol, ports, cidrs, types)


def _ports(value: Any, where: str, errors: List[str]) -> Optional[Tuple[int, int]]:
    """None, a port, "first-last" or [first, last] -> (first, last)."""
    if value is None:
        return None
    if isinstance(value, str) and "-" in value:
        value = value.split("-", 1)
    parts = list(value) if isinstance(value, (list, tuple)) else [value, value]
    try:
        first, last = (int(p) for p in parts)
    except (TypeError, ValueError):
        errors.append("%s: %r is not a port, a 'first-last' range or [first, last]" % (where, value))
        return None
    if not 1 <= first <= last <= 65535:
        errors.append("%s: %r must satisfy 1 <= first <= last <= 65535" % (where, value))
        return None
    return first, last


def _icmpv6_types(values: Sequence[Any], where: str, errors: List[str]) -> Tuple[int, ...]:
    types: List[int] = []
    for value in values:
        if isinstance(value, int) and 0 <= value <= 255:
            types.append(value)
        else:
            errors.append("%s: %r is not an ICMPv6 type (0-255)" % (where, value))
    return tuple(types)


def _checked_cidrs(values: Any, where: str, errors: List[str]) -> Tuple[str, ...]:
    """Addresses and CIDRs, normalised (host bits cleared, single addresses as /32 or /128)."""
    return _union(str(network) for network, _host_bits in _read_cidrs(values, where, errors))


def host_bits_warnings(variables: Mapping[str, Any]) -> List[str]:
    """A warning per CIDR with host bits set: the apiserver's default accepts them, and so do we, but
    "10.0.0.5/24" is often an interface address typed for a host, and admits the whole network."""
    entries = [(name, variables.get(name)) for name in CIDR_VARIABLES]
    entries += [("netpol_privileged_rules[%d].cidrs" % i, rule.get("cidrs"))
                for i, rule in enumerate(variables.get("netpol_privileged_rules") or []) if isinstance(rule, Mapping)]
    warnings: List[str] = []
    for where, values in entries:
        for index, text, network in _host_bits(values):
            warnings.append("%s[%d]: CIDR value %r has host bits set; using %s (every address of it is admitted)"
                            % (where, index, text, network))
    return warnings


def _host_bits(values: Any) -> Iterable[Tuple[int, str, Any]]:
    for index, text in enumerate([values] if isinstance(values, str) else values or []):
        try:
            network, host_bits = read_address_or_cidr(text)
        except (TypeError, ValueError):
            continue  # reported as an error by rules_from_vars
        if host_bits:
            yield index, text, network


def _read_cidrs(values: Any, where: str, errors: List[str]) -> List[Tuple[Any, bool]]:
    """Each entry by the collection's one address grammar (validate.read_address_or_cidr)."""
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, (list, tuple)):
        errors.append("%s: must be a list of IP addresses or CIDRs, not %r" % (where, values))
        return []
    found = []
    for index, value in enumerate(values):
        if not isinstance(value, str):
            errors.append("%s[%d]: %r is not an IP address or CIDR: must be a string" % (where, index, value))
            continue
        try:
            found.append(read_address_or_cidr(value))
        except ValueError as reason:
            errors.append("%s[%d]: %r is not an IP address or CIDR: %s" % (where, index, value, reason))
    return found


def _union(*groups: Iterable[str]) -> Tuple[str, ...]:
    """Distinct entries in first-seen order, so the same input always renders the same rules."""
    seen: Dict[str, None] = {}
    for group in groups:
        for item in group:
            seen.setdefault(item, None)
    return tuple(seen)
