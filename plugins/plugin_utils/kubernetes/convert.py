# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A cluster snapshot as the engine's IR, merged with the inventory's fleet (pure, no I/O).

Mapping of cluster objects to inventory hosts (docs/kubernetes.md):
- A Node is the inventory host whose `netpol_node_name` is the Node's name, else the inventory
  host of that name, else the inventory host that owns one of the Node's InternalIP/ExternalIP
  addresses. Node addresses are node addresses (always allowed; never pod addresses).
- A Pod (not hostNetwork, not Succeeded/Failed, with an IP) is a workload with its labels,
  `status.podIPs` (dual-stack) and its containers' named ports. When one of its IPs is an
  inventory host's address, that host enforces for it (host mode: the host is the pod); any
  other pod is a peer only, enforced by nobody here. A hostNetwork pod is its node.
- A VirtualMachineInstance is a bridge-mode workload of the hypervisor its status.nodeName maps
  to (both nodes during a live migration). Its bridge port is the one the hypervisor's bridge
  forwarding database has its MAC behind (netpol_bridge state=query fdb=true, run before compile on
  the hosts vmi_hosts lists); a MAC behind no port, or behind several, stops the run. VMIs on nodes outside
  the inventory are peers.
Errors name the cluster object (kind namespace/name) and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from ansible_collections.netpol.fleet.plugins.module_utils.bridge.ports import FACTS_VARIABLE
from ansible_collections.netpol.fleet.plugins.module_utils.engine.errors import InputErrors
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import (
    METADATA_NAME,
    PROTOCOLS,
    Fleet,
    NamedPort,
    Namespace,
    Policy,
    Workload,
    labels_of,
)
from ansible_collections.netpol.fleet.plugins.module_utils.engine.parse import parse_documents
from ansible_collections.netpol.fleet.plugins.module_utils.engine.validate import read_ip
from ansible_collections.netpol.fleet.plugins.plugin_utils.kubernetes.snapshot import (
    NAMESPACES,
    NETWORK_POLICIES,
    NODES,
    PODS,
    VMIS,
    Snapshot,
)

TERMINAL_PHASES = ("Succeeded", "Failed")
NODE_ADDRESS_TYPES = ("InternalIP", "ExternalIP")
POLICY_SOURCE = "kubernetes networkpolicies"
# Workloads no inventory host enforces for get a host of this form: never an inventory name,
# so the compiler builds no host state for them; they still resolve as peers everywhere.
PEER_ONLY = "kubernetes:"


@dataclass(frozen=True)
class Origin:
    """What a workload is in the cluster: kind (Pod, VirtualMachineInstance, or host/vm for
    inventory workloads) and the node it runs on."""

    kind: str
    node: str = ""


@dataclass
class ClusterInputs:
    policies: Tuple[Policy, ...] = ()
    fleet: Fleet = field(default_factory=lambda: Fleet(workloads=(), namespaces=()))
    origins: Dict[Workload, Origin] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)


def is_peer_only(workload: Workload) -> bool:
    return workload.host.startswith(PEER_ONLY)


def cluster_inputs(snapshot: Snapshot, inventory: Fleet, hostvars: Mapping[str, Mapping[str, Any]],
                   declared_namespaces: Iterable[str] = (), vmi_antispoof: str = "full",
                   find_ports: bool = True) -> ClusterInputs:
    """The cluster's policies and the fleet of inventory and cluster workloads, or the errors.
    find_ports=False (the selector lookup, which never compiles) leaves VMIs' bridge ports unknown."""
    found = ClusterInputs(warnings=list(snapshot.warnings))
    found.policies = cluster_policies(snapshot, found.errors, found.warnings)
    nodes = NodeMap(snapshot.of(NODES), inventory, hostvars)
    owners = {address: host for host, addresses in inventory.node_addresses for address in addresses}
    workloads: List[Tuple[Workload, Origin]] = []
    for pod in snapshot.of(PODS):
        workload = pod_workload(pod, owners, found.errors)
        if workload is not None:
            workloads.append((workload, Origin("Pod", _text(pod, "spec", "nodeName"))))
    for vmi in snapshot.of(VMIS):
        workloads.extend(vmi_workloads(vmi, nodes, found.errors, hostvars if find_ports else None, vmi_antispoof))
    found.errors.extend(inventory_conflicts(workloads, inventory))
    found.errors.extend(duplicate_addresses(workloads))
    found.fleet = Fleet(
        workloads=tuple(sorted(inventory.workloads + tuple(w for w, _o in workloads),
                               key=lambda w: (w.namespace, w.name, w.host))),
        namespaces=merged_namespaces(snapshot, inventory, set(declared_namespaces), found.errors),
        node_addresses=nodes.merged_addresses(inventory.node_addresses),
    )
    found.origins = dict(workloads)
    for workload in inventory.workloads:
        found.origins[workload] = Origin("vm" if workload.interface else "host", workload.enforcer)
    return found


# ---- NetworkPolicies and Namespaces ---------------------------------------------------------


def cluster_policies(snapshot: Snapshot, errors: List[str], warnings: List[str]) -> Tuple[Policy, ...]:
    """The cluster's NetworkPolicies through the manifest parser: errors read as for files."""
    documents = [manifest(item) for item in snapshot.of(NETWORK_POLICIES)]
    try:
        policies, notes = parse_documents(documents, POLICY_SOURCE, lambda n: "kubernetes:" + _name(documents[n]))
    except InputErrors as bad:
        errors.extend(str(e) for e in bad.errors)
        return ()
    warnings.extend(notes)
    return tuple(policies)


def manifest(item: Mapping[str, Any]) -> Dict[str, Any]:
    """The object as a manifest: the read-only status (served by some releases, empty) dropped."""
    return {k: v for k, v in item.items() if k != "status"}


def merged_namespaces(snapshot: Snapshot, inventory: Fleet, declared: Set[str],
                      errors: List[str]) -> Tuple[Namespace, ...]:
    """The cluster's namespaces (with kubernetes.io/metadata.name, which 1.20 does not add), plus
    the inventory's; a namespace declared in netpol_namespaces and in the cluster is an error."""
    found: Dict[str, Namespace] = {}
    for item in snapshot.of(NAMESPACES):
        name = _text(item, "metadata", "name")
        labels = dict(_mapping(item, "metadata", "labels"))
        labels.setdefault(METADATA_NAME, name)
        found[name] = Namespace(name, labels_of(labels))
    for namespace in inventory.namespaces:
        if namespace.name in found and namespace.name in declared:
            errors.append("netpol_namespaces: %s: also a Namespace of the cluster: with netpol_source=kubernetes "
                          "its labels come from the cluster; remove it from netpol_namespaces" % namespace.name)
        found.setdefault(namespace.name, namespace)
    return tuple(found[name] for name in sorted(found))


# ---- Nodes ------------------------------------------------------------------------------------


class NodeMap:
    """Node name -> inventory host, and the addresses of every node."""

    def __init__(self, nodes: Sequence[Mapping[str, Any]], inventory: Fleet,
                 hostvars: Mapping[str, Mapping[str, Any]]):
        by_node_name = {str(v["netpol_node_name"]): h for h, v in hostvars.items() if v.get("netpol_node_name")}
        owners = {address: host for host, addresses in inventory.node_addresses for address in addresses}
        self.hosts: Dict[str, str] = {}
        self.addresses: Dict[str, Tuple[str, ...]] = {}
        for node in nodes:
            name = _text(node, "metadata", "name")
            addresses = node_addresses(node)
            self.addresses[name] = addresses
            host = by_node_name.get(name) or (name if name in hostvars else None)
            host = host or next((owners[a] for a in addresses if a in owners), None)
            if host is not None:
                self.hosts[name] = host
        for name, host in by_node_name.items():
            self.hosts.setdefault(name, host)

    def host_of(self, node: str) -> Optional[str]:
        return self.hosts.get(node)

    def merged_addresses(self, inventory: Sequence[Tuple[str, Tuple[str, ...]]]) -> Tuple[Tuple[str, Tuple[str, ...]], ...]:
        """Each inventory host's addresses plus those of its Node; unmapped Nodes by Node name."""
        merged = {host: list(addresses) for host, addresses in inventory}
        for node, addresses in sorted(self.addresses.items()):
            key = self.hosts.get(node, node)
            entry = merged.setdefault(key, [])
            entry.extend(a for a in addresses if a not in entry)
        return tuple((host, tuple(addresses)) for host, addresses in sorted(merged.items()))


def node_addresses(node: Mapping[str, Any]) -> Tuple[str, ...]:
    found: List[str] = []
    for entry in (node.get("status") or {}).get("addresses") or []:
        address = _address(entry.get("address")) if entry.get("type") in NODE_ADDRESS_TYPES else None
        if address and address not in found:
            found.append(address)
    return tuple(found)


# ---- Pods -------------------------------------------------------------------------------------


def pod_workload(pod: Mapping[str, Any], owners: Mapping[str, str], errors: List[str]) -> Optional[Workload]:
    """The pod as a workload, or None when it has no policy address of its own."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    if spec.get("hostNetwork") or status.get("phase") in TERMINAL_PHASES:
        return None  # a hostNetwork pod is its node; a finished pod's IP may be anyone's next
    addresses = pod_addresses(status)
    if not addresses:
        return None
    hosts = sorted({owners[a] for a in addresses if a in owners})
    where = "kubernetes Pod %s" % _name(pod)
    if len(hosts) > 1:
        errors.append("%s: status.podIPs: its addresses belong to several inventory hosts: %s" % (where, ", ".join(hosts)))
    ports = container_ports(spec, where, errors)
    return Workload(
        name=_text(pod, "metadata", "name"),
        namespace=_text(pod, "metadata", "namespace"),
        labels=labels_of(_mapping(pod, "metadata", "labels")),
        addresses=addresses,
        ports=ports,
        host=hosts[0] if hosts else PEER_ONLY + "pod/" + _name(pod),
    )


def pod_addresses(status: Mapping[str, Any]) -> Tuple[str, ...]:
    """status.podIPs (dual-stack), else the older single status.podIP."""
    texts = [entry.get("ip") for entry in status.get("podIPs") or []] or [status.get("podIP")]
    found: List[str] = []
    for text in texts:
        address = _address(text)
        if address and address not in found:
            found.append(address)
    return tuple(found)


def container_ports(spec: Mapping[str, Any], where: str, errors: List[str]) -> Tuple[NamedPort, ...]:
    """The named container ports; one name with two numbers on one protocol is an error."""
    ports: Dict[Tuple[str, str], NamedPort] = {}
    for c, container in enumerate(spec.get("containers") or []):
        for p, port in enumerate(container.get("ports") or []):
            if not port.get("name"):
                continue
            named = NamedPort(port["name"], int(port["containerPort"]), str(port.get("protocol") or "TCP"))
            key = (named.name, named.protocol)
            if key in ports and ports[key] != named:
                errors.append("%s: spec.containers[%d].ports[%d].name: named port %s/%s is also port %d"
                              % (where, c, p, named.protocol, named.name, ports[key].port))
            ports.setdefault(key, named)
    return tuple(ports[key] for key in sorted(ports))


# ---- VirtualMachineInstances ------------------------------------------------------------------


def vmi_workloads(vmi: Mapping[str, Any], nodes: NodeMap, errors: List[str],
                  hostvars: Optional[Mapping[str, Mapping[str, Any]]] = None,
                  antispoof: str = "full") -> List[Tuple[Workload, Origin]]:
    """The VMI as a workload of each node it is on (two during a live migration), on the bridge port
    its MAC is behind there; without hostvars (the lookup) the port is left unknown."""
    status = vmi.get("status") or {}
    addresses, macs, link_local = vmi_addresses(status)
    if status.get("phase") in TERMINAL_PHASES or not addresses:
        return []
    where = "kubernetes VirtualMachineInstance %s" % _name(vmi)
    found = []
    for node in vmi_nodes(status):
        host = nodes.host_of(node)
        port, mac = (None, macs[0] if macs else None)
        if host is not None and hostvars is not None:
            port, mac = vmi_port(status, hostvars.get(host, {}), "%s: runs on node %s, inventory host %s"
                                 % (where, node, host), errors)
            if port is None:
                continue  # the error says why
        workload = Workload(
            name=_text(vmi, "metadata", "name"),
            namespace=_text(vmi, "metadata", "namespace"),
            labels=labels_of(_mapping(vmi, "metadata", "labels")),
            addresses=addresses,
            ports=vmi_ports(vmi, where, errors),
            host=host or PEER_ONLY + "vmi/%s@%s" % (_name(vmi), node),
            mac=mac,
            **({"interface": port, "antispoof": antispoof, "allowed_addresses": link_local} if port else {}),
        )
        found.append((workload, Origin("VirtualMachineInstance", node)))
    return found[:1] if len({w.host for w, _o in found}) == 1 else found


def vmi_hosts(snapshot: Snapshot, inventory: Fleet, hostvars: Mapping[str, Mapping[str, Any]]) -> List[str]:
    """The inventory hosts the snapshot's VMIs run on (both nodes of a live migration), mapped as
    cluster_inputs maps them: the hypervisors whose bridge forwarding database compile must read."""
    nodes = NodeMap(snapshot.of(NODES), inventory, hostvars)
    found: List[str] = []
    for vmi in snapshot.of(VMIS):
        status = vmi.get("status") or {}
        if status.get("phase") in TERMINAL_PHASES or not vmi_addresses(status)[0]:
            continue  # not a workload (vmi_workloads): no port to find
        found.extend(h for h in (nodes.host_of(node) for node in vmi_nodes(status)) if h and h not in found)
    return found


def vmi_port(status: Mapping[str, Any], host_vars: Mapping[str, Any], where: str,
             errors: List[str]) -> Tuple[Optional[str], Optional[str]]:
    """(bridge port, MAC) of the VMI's one interface the hypervisor's bridges learned; else an error."""
    facts = host_vars.get(FACTS_VARIABLE)
    if not isinstance(facts, Mapping) or not isinstance(facts.get("fdb"), Mapping):
        errors.append("%s: its bridge forwarding database was not read: the enforce role reads it only on the hosts "
                      "VMIs ran on when it listed them (netpol.fleet.netpol_bridge state=query fdb=true, before the "
                      "compile): the VMI came to this node since, or the host is not in this run's batch; run again "
                      "(with the host). No host was changed" % where)
        return None, None
    bridged = [(i, str(iface["mac"]).lower()) for i, iface in enumerate(status.get("interfaces") or [])
               if iface.get("mac") and str(iface["mac"]).lower() in facts["fdb"]]
    if not bridged:
        macs = [str(iface["mac"]).lower() for iface in status.get("interfaces") or [] if iface.get("mac")]
        errors.append("%s: status.interfaces[].mac: no MAC of the VMI (%s) is behind a port of the host's bridges "
                      "(its bridge forwarding database has no entry: the VM sent no frame within the bridge's "
                      "ageing time, or it is not bridged on this host), so its traffic cannot be filtered. "
                      "No host was changed" % (where, ", ".join(macs) or "none"))
        return None, None
    if len(bridged) > 1:
        errors.append("%s: status.interfaces: %s are all bridged on the host: one bridge port per VM is supported. "
                      "No host was changed" % (where, ", ".join("[%d] %s" % b for b in bridged)))
        return None, None
    index, mac = bridged[0]
    ports = list(facts["fdb"][mac])
    if len(ports) != 1:
        errors.append("%s: status.interfaces[%d].mac: MAC %s is behind several bridge ports of the host (%s): "
                      "a VM's MAC is on one port. No host was changed" % (where, index, mac, ", ".join(ports)))
        return None, None
    return str(ports[0]), mac


def vmi_nodes(status: Mapping[str, Any]) -> List[str]:
    nodes = [status.get("nodeName") or ""]
    migration = status.get("migrationState") or {}
    if migration.get("targetNode") and not migration.get("completed") and migration["targetNode"] not in nodes:
        nodes.append(migration["targetNode"])
    return [n for n in nodes if n] or [""]


def vmi_addresses(status: Mapping[str, Any]) -> Tuple[Tuple[str, ...], List[str], Tuple[str, ...]]:
    """Every interface's addresses (prefix lengths dropped, link-local apart: for anti-spoofing only,
    never in a peer set) and MACs."""
    addresses: List[str] = []
    link_local: List[str] = []
    macs: List[str] = []
    for interface in status.get("interfaces") or []:
        texts = list(interface.get("ipAddresses") or []) or [interface.get("ipAddress")]
        for text in texts:
            address = _address(str(text).partition("/")[0]) if text else None
            if address and address not in addresses + link_local:
                (link_local if _link_local(address) else addresses).append(address)
        if interface.get("mac"):
            macs.append(str(interface["mac"]).lower())
    return tuple(addresses), macs, tuple(link_local)


def vmi_ports(vmi: Mapping[str, Any], where: str, errors: List[str]) -> Tuple[NamedPort, ...]:
    interfaces = (((vmi.get("spec") or {}).get("domain") or {}).get("devices") or {}).get("interfaces") or []
    ports: Dict[Tuple[str, str], NamedPort] = {}
    for i, interface in enumerate(interfaces):
        for p, port in enumerate(interface.get("ports") or []):
            protocol = str(port.get("protocol") or "TCP").upper()
            if not port.get("name") or protocol not in PROTOCOLS:
                continue
            named = NamedPort(port["name"], int(port["port"]), protocol)
            if (named.name, protocol) in ports and ports[(named.name, protocol)] != named:
                errors.append("%s: spec.domain.devices.interfaces[%d].ports[%d].name: named port %s/%s is also "
                              "port %d" % (where, i, p, protocol, named.name, ports[(named.name, protocol)].port))
            ports.setdefault((named.name, protocol), named)
    return tuple(ports[key] for key in sorted(ports))


# ---- Cross-checks -----------------------------------------------------------------------------


def inventory_conflicts(workloads: Sequence[Tuple[Workload, Origin]], inventory: Fleet) -> List[str]:
    """A host that is an inventory workload cannot also be a pod: one place describes it."""
    described = {w.host: w for w in inventory.workloads if w.interface is None}
    return ["inventory host %s: netpol_namespace: the host is also the cluster's %s %s/%s (address %s): "
            "with netpol_source=kubernetes describe it in one place"
            % (w.host, origin.kind, w.namespace, w.name, ", ".join(w.addresses))
            for w, origin in workloads if w.host in described and origin.kind == "Pod"]


def duplicate_addresses(workloads: Sequence[Tuple[Workload, Origin]]) -> List[str]:
    """Two live objects with one address: policies could not tell them apart."""
    owner: Dict[str, Tuple[Workload, Origin]] = {}
    errors = []
    for workload, origin in workloads:
        for address in workload.addresses:
            first = owner.setdefault(address, (workload, origin))
            if first[0] is not workload and (first[0].namespace, first[0].name) != (workload.namespace, workload.name):
                errors.append("kubernetes %s %s/%s: address %s is also used by %s %s/%s" % (
                    origin.kind, workload.namespace, workload.name, address, first[1].kind,
                    first[0].namespace, first[0].name))
    return errors


# ---- JSON helpers -----------------------------------------------------------------------------


def _name(item: Mapping[str, Any]) -> str:
    namespace = _text(item, "metadata", "namespace")
    return "%s/%s" % (namespace, _text(item, "metadata", "name")) if namespace else _text(item, "metadata", "name")


def _text(item: Mapping[str, Any], *path: str) -> str:
    value: Any = item
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return str(value) if value is not None else ""


def _mapping(item: Mapping[str, Any], *path: str) -> Dict[str, str]:
    value: Any = item
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return {str(k): str(v) for k, v in (value or {}).items()}


def _address(text: Any) -> Optional[str]:
    try:
        return str(read_ip(str(text))) if text else None
    except ValueError:
        return None


def _link_local(address: str) -> bool:
    return read_ip(address).is_link_local
