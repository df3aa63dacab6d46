# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet from the Ansible inventory: workloads, namespaces, node addresses.

Host mode: every inventory host with `netpol_namespace` is a workload of its own.
Bridge mode: a hypervisor's `netpol_workloads` lists the VMs on its bridge ports.
All input is checked and every problem reported together, each naming the inventory
host (or netpol_namespaces) and the variable path.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.netpol.fleet.plugins.module_utils.engine.errors import InputError, InputErrors, Problems
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import (
    EGRESS,
    INGRESS,
    METADATA_NAME,
    PROTOCOLS,
    Fleet,
    LabelSelector,
    NamedPort,
    Namespace,
    Policy,
    Workload,
    labels_of,
)
from ansible_collections.netpol.fleet.plugins.module_utils.engine.validate import (
    check,
    dns1123_label,
    integer,
    invalid,
    join,
    known_fields,
    labels,
    mapping,
    or_default,
    port_name,
    port_number,
    quoted,
    read_cidr,
    read_ip,
    required,
    sequence,
    string,
)

WORKLOAD_FIELDS = ("name", "namespace", "labels", "addresses", "ports", "mac", "interface", "antispoof",
                   "allowed_addresses")
ANTISPOOF_MODES = ("full", "mac_only", "off")  # bridge/antispoof.py says what each checks
PORT_FIELDS = ("name", "port", "protocol")
FACT_VARIABLES = ("ansible_all_ipv4_addresses", "ansible_all_ipv6_addresses")
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
IFNAME_MAX = 15  # IFNAMSIZ - 1

# Where each address of a workload came from, to name both ends of a duplicate.
AddressOrigins = Dict[str, str]


def load_fleet(hostvars: Mapping[str, Mapping[str, Any]], namespaces: Optional[Mapping[str, Any]]) -> Fleet:
    """Workloads (sorted by namespace, name), namespaces (sorted) and each host's own addresses.

    Raises InputErrors naming every problem in the inventory.
    """
    errors: List[InputError] = []
    found: List[Tuple[Workload, AddressOrigins]] = []
    nodes = []
    for host in sorted(hostvars):
        problems = Problems("inventory host %s" % host)
        host_vars = hostvars[host]
        own, origins = host_addresses(host_vars, problems)
        nodes.append((host, tuple(own)))
        if host_vars.get("netpol_namespace") is not None:
            found.append(host_workload(host, host_vars, own, origins, problems))
        bridged = sequence(or_default(host_vars.get("netpol_workloads"), []), "netpol_workloads", problems) or []
        for i, item in enumerate(bridged):
            workload = bridge_workload(host, item, "netpol_workloads[%d]" % i, problems)
            if workload is not None:
                found.append(workload)
        errors.extend(problems.errors)
    errors.extend(_duplicate_names(found))
    errors.extend(_duplicate_addresses(found))
    known = read_namespaces(namespaces, [w for w, _origins in found], errors)
    if errors:
        raise InputErrors(errors)
    return Fleet(
        workloads=tuple(sorted((w for w, _origins in found), key=lambda w: (w.namespace, w.name, w.host))),
        namespaces=known,
        node_addresses=tuple(nodes),
    )


def host_addresses(host_vars: Mapping[str, Any], problems: Problems) -> Tuple[List[str], AddressOrigins]:
    """netpol_addresses if set, else the address facts minus loopback and link-local, else an IP ansible_host."""
    if host_vars.get("netpol_addresses") is not None:
        return read_addresses(host_vars["netpol_addresses"], "netpol_addresses", problems)
    addresses: List[str] = []
    origins: AddressOrigins = {}
    for variable in FACT_VARIABLES:
        for text in host_vars.get(variable) or []:
            address = _fact_address(text)
            if address and address not in origins:
                addresses.append(address)
                origins[address] = variable
    if not addresses and isinstance(host_vars.get("ansible_host"), str):
        address = _fact_address(host_vars["ansible_host"])
        if address:
            return [address], {address: "ansible_host"}
    return addresses, origins


def _fact_address(text: Any) -> Optional[str]:
    try:
        address = read_ip(str(text))
    except ValueError:
        return None
    return None if address.is_link_local or address.is_loopback else str(address)


def read_addresses(value: Any, field: str, problems: Problems) -> Tuple[List[str], AddressOrigins]:
    """A list of IPs, each optionally with a /prefix (dropped), normalised; duplicates dropped."""
    addresses: List[str] = []
    origins: AddressOrigins = {}
    for i, text in enumerate(sequence(value, field, problems) or []):
        path = "%s[%d]" % (field, i)
        if string(text, path, problems) is None:
            continue
        try:
            if "/" in text:
                read_cidr(text)
            address = str(read_ip(text.partition("/")[0]))
        except ValueError as reason:
            problems.add(path, "%s is not an IP address: %s" % (quoted(text), reason))
            continue
        if address not in origins:
            addresses.append(address)
            origins[address] = path
    return addresses, origins


def host_workload(
    host: str, host_vars: Mapping[str, Any], addresses: List[str], origins: AddressOrigins, problems: Problems
) -> Tuple[Workload, AddressOrigins]:
    namespace = _namespace(host_vars["netpol_namespace"], "netpol_namespace", problems)
    if not addresses and not host_vars.get("netpol_addresses"):  # invalid entries are reported already
        problems.add("netpol_addresses", "Required value: no addresses; set netpol_addresses or gather facts")
    workload = Workload(
        name=host,
        namespace=namespace,
        labels=labels_of(labels(host_vars.get("netpol_labels"), "netpol_labels", problems)),
        addresses=tuple(addresses),
        ports=read_ports(host_vars.get("netpol_ports"), "netpol_ports", problems),
        host=host,
    )
    return workload, origins


def bridge_workload(host: str, value: Any, field: str, problems: Problems) -> Optional[Tuple[Workload, AddressOrigins]]:
    """One VM of a hypervisor's netpol_workloads: host is the hypervisor, interface its bridge port."""
    item = mapping(value, field, problems)
    if item is None:
        return None
    known_fields(item, WORKLOAD_FIELDS, field, problems)
    name = required(item, "name", field, problems)
    if name is not None and string(name, join(field, "name"), problems) == "":
        problems.add(join(field, "name"), "Required value")
    namespace = _namespace(required(item, "namespace", field, problems), join(field, "namespace"), problems)
    given = required(item, "addresses", field, problems)
    addresses, origins = read_addresses(or_default(given, []), join(field, "addresses"), problems)
    if given is not None and len(given) == 0:
        problems.add(join(field, "addresses"), "Required value: at least one address")
    antispoof = _antispoof(or_default(item.get("antispoof"), "full"), join(field, "antispoof"), problems)
    mac = _mac(item.get("mac"), join(field, "mac"), problems)
    if antispoof != "off" and item.get("mac") is None:
        problems.add(join(field, "mac"), "Required value: anti-spoofing checks the VM's source MAC (set "
                     "antispoof: off to leave this port unchecked)")
    workload = Workload(
        name=name if isinstance(name, str) else "",
        namespace=namespace,
        labels=labels_of(labels(item.get("labels"), join(field, "labels"), problems)),
        addresses=tuple(addresses),
        ports=read_ports(item.get("ports"), join(field, "ports"), problems),
        host=host,
        interface=_interface(required(item, "interface", field, problems), join(field, "interface"), problems),
        mac=mac,
        antispoof=antispoof,
        allowed_addresses=_allowed_addresses(item.get("allowed_addresses"), join(field, "allowed_addresses"), problems),
    )
    return workload, origins


def _antispoof(value: Any, field: str, problems: Problems) -> str:
    if string(value, field, problems) is None:
        return "full"
    if value not in ANTISPOOF_MODES:
        problems.add(field, "Unsupported value: %s: supported values: %s"
                     % (quoted(value), ", ".join(quoted(m) for m in ANTISPOOF_MODES)))
    return value


def _allowed_addresses(value: Any, field: str, problems: Problems) -> Tuple[str, ...]:
    """Extra sources a VM may send from (allowed-address pairs): addresses or CIDRs, each kept out
    of every peer set. /0 would switch the IP check off: that is antispoof: mac_only, said plainly."""
    found = []
    for i, text in enumerate(sequence(or_default(value, []), field, problems) or []):
        where = "%s[%d]" % (field, i)
        if string(text, where, problems) is None:
            continue
        try:
            network, host_bits = read_cidr(text) if "/" in text else (read_ip(text), False)
        except ValueError as e:
            problems.add(where, invalid(text, str(e)))
            continue
        if host_bits:
            problems.add(where, invalid(text, "must not have host bits set (a network, or an address without /)"))
        elif getattr(network, "prefixlen", None) == 0:
            problems.add(where, invalid(text, "allows every source; use antispoof: mac_only instead"))
        else:
            found.append(str(network))
    return tuple(found)


def _namespace(value: Any, field: str, problems: Problems) -> str:
    if value is None or string(value, field, problems) is None:
        return ""
    check(dns1123_label, value, field, problems)
    return value


def _interface(value: Any, field: str, problems: Problems) -> Optional[str]:
    if value is None or string(value, field, problems) is None:
        return None
    if not 0 < len(value) <= IFNAME_MAX or re.search(r"[\s/:]", value) or value in (".", ".."):
        problems.add(field, invalid(value, "must be a Linux interface name (1-15 characters, no '/', ':' or spaces)"))
    return value


def _mac(value: Any, field: str, problems: Problems) -> Optional[str]:
    if value is None or string(value, field, problems) is None:
        return None
    if not _MAC.match(value):
        problems.add(field, invalid(value, "must be a MAC address like 52:54:00:12:34:56"))
    return value.lower()


def read_ports(value: Any, field: str, problems: Problems) -> Tuple[NamedPort, ...]:
    """Named ports {name, port, protocol (TCP)}; a name is unique per protocol."""
    ports: List[NamedPort] = []
    for i, item in enumerate(sequence(or_default(value, []), field, problems) or []):
        path = "%s[%d]" % (field, i)
        port = read_port(item, path, problems)
        if port is None:
            continue
        if any(p.name == port.name and p.protocol == port.protocol for p in ports):
            problems.add(join(path, "name"), "Duplicate value %s for protocol %s" % (quoted(port.name), port.protocol))
        ports.append(port)
    return tuple(ports)


def read_port(value: Any, field: str, problems: Problems) -> Optional[NamedPort]:
    item = mapping(value, field, problems)
    if item is None:
        return None
    before = len(problems.errors)
    known_fields(item, PORT_FIELDS, field, problems)
    name = required(item, "name", field, problems)
    if name is not None and string(name, join(field, "name"), problems) is not None:
        check(port_name, name, join(field, "name"), problems)
    number = required(item, "port", field, problems)
    if number is not None and integer(number, join(field, "port"), problems) is not None:
        check(port_number, number, join(field, "port"), problems)
    protocol = or_default(item.get("protocol"), "TCP")
    if protocol not in PROTOCOLS:
        problems.add(join(field, "protocol"),
                     "Unsupported value %s: supported values: %s" % (quoted(protocol), ", ".join(PROTOCOLS)))
    if len(problems.errors) > before:
        return None
    return NamedPort(name=name, port=number, protocol=protocol)


def read_namespaces(
    value: Optional[Mapping[str, Any]], workloads: List[Workload], errors: List[InputError]
) -> Tuple[Namespace, ...]:
    """netpol_namespaces plus every namespace a workload uses, each labelled with its metadata.name."""
    problems = Problems("netpol_namespaces")
    declared = mapping(or_default(value, {}), "", problems) or {}
    labelled = {}
    for name, spec in declared.items():
        one = Problems("netpol_namespaces", str(name))
        found = read_namespace(name, spec, one)
        if found is not None:
            labelled[name] = found
        problems.errors.extend(one.errors)
    errors.extend(problems.errors)
    for workload in workloads:
        labelled.setdefault(workload.namespace, {METADATA_NAME: workload.namespace})
    return tuple(Namespace(name, labels_of(found)) for name, found in sorted(labelled.items()) if name)


def read_namespace(name: Any, spec: Any, problems: Problems) -> Optional[Dict[str, str]]:
    """One netpol_namespaces entry: its labels with kubernetes.io/metadata.name added."""
    if string(name, "", problems) is None:
        return None
    check(dns1123_label, name, "", problems)
    spec = mapping(or_default(spec, {}), "", problems) or {}
    known_fields(spec, ("labels",), "", problems)
    found = dict(labels(spec.get("labels"), "labels", problems) or {})
    if found.setdefault(METADATA_NAME, name) != name:
        problems.add(join("labels", METADATA_NAME), "must be the namespace name %s; it is set automatically"
                     % quoted(name))
    return found


def _duplicate_names(found: List[Tuple[Workload, AddressOrigins]]) -> List[InputError]:
    seen: Dict[Tuple[str, str], Workload] = {}
    errors = []
    for workload, _origins in found:
        key = (workload.namespace, workload.name)
        if key in seen and workload.namespace:
            errors.append(InputError(
                "inventory host %s" % workload.host, "%s/%s" % key, "",
                "duplicate workload name in namespace %s: also on inventory host %s"
                % (quoted(workload.namespace), seen[key].host),
            ))
        seen.setdefault(key, workload)
    return errors


def _duplicate_addresses(found: List[Tuple[Workload, AddressOrigins]]) -> List[InputError]:
    """An address belongs to one workload: otherwise policies could not tell them apart."""
    owner: Dict[str, Workload] = {}
    errors = []
    for workload, origins in found:
        for address in workload.addresses:
            first = owner.setdefault(address, workload)
            if first is not workload:
                errors.append(InputError(
                    "inventory host %s" % workload.host, "", origins.get(address, ""),
                    "address %s is also used by workload %s/%s (inventory host %s)"
                    % (address, first.namespace, first.name, first.host),
                ))
    return errors


def unknown_namespace_errors(policies: Sequence[Policy], fleet: Fleet) -> List[InputError]:
    """A policy in a namespace the fleet does not have (not in netpol_namespaces, no workload in it)
    protects nothing and kube-apiserver refuses it: most often a typo that leaves the intended
    namespace open, so it is an error naming the policy."""
    known = {namespace.name for namespace in fleet.namespaces}
    return [
        InputError(policy.origin, policy.key, "metadata.namespace",
                   "namespace %s does not exist: it is not in netpol_namespaces and no workload is in it "
                   "(declare it in netpol_namespaces if it is meant to exist)" % quoted(policy.namespace))
        for policy in policies if policy.namespace not in known
    ]


# Not a valid NetworkPolicy name (underscores), so it can never collide with a user's policy.
DEFAULT_DENY_NAME = "netpol_default_deny"


def default_deny_policies(fleet: Fleet) -> Tuple[Policy, ...]:
    """netpol_default_deny: a deny-all (Ingress and Egress, no rules) in every namespace that has
    workloads, so a workload no policy selects is isolated from the first run that programs it.

    As policies they are additive like any other: a workload some policy allows something keeps
    exactly that, and the simulator, the verify matrix and the rule comments see them too.
    """
    namespaces = sorted({w.namespace for w in fleet.workloads if w.namespace})
    return tuple(
        Policy(namespace=namespace, name=DEFAULT_DENY_NAME, pod_selector=LabelSelector(),
               policy_types=(INGRESS, EGRESS), origin=DEFAULT_DENY_NAME)
        for namespace in namespaces
    )
