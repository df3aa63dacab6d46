# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bridge-mode input checks on the controller, before any host changes.

The VMs of netpol_workloads against each other (one port and one MAC per VM) and against what
each hypervisor reported (netpol.fleet.netpol_bridge state=query, registered as
`netpol_bridge_facts`): the port exists, it is a port of a bridge, on a VLAN-aware bridge
(vlan_filtering 1) it is an access port (exactly one VLAN, its PVID, egress untagged: the refusal of
anything else says what the port carries), br_netfilter is there.
Out come the errors, each naming the inventory host and the field, and each hypervisor's
port -> bridge map for compile. Pure Python, standard library only.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Tuple

from ansible_collections.netpol.fleet.plugins.module_utils.bridge.vlans import access_vlan, describe
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import Fleet, Workload

FACTS_VARIABLE = "netpol_bridge_facts"

PortBridges = Dict[str, Dict[str, str]]  # hypervisor -> port -> bridge
BridgeVlans = Dict[str, Dict[str, Dict[str, Any]]]  # hypervisor -> port -> its VLANs and bridge


def field_of(hostvars: Mapping[str, Mapping[str, Any]], workload: Workload, name: str) -> str:
    """netpol_workloads[i].NAME of the VM, i its index in the hypervisor's list."""
    for i, item in enumerate(hostvars.get(workload.host, {}).get("netpol_workloads") or []):
        if isinstance(item, Mapping) and item.get("name") == workload.name and item.get("namespace") == workload.namespace:
            return "netpol_workloads[%d].%s" % (i, name)
    return "netpol_workloads.%s" % name


def check_ports(fleet: Fleet, hostvars: Mapping[str, Mapping[str, Any]]) -> Tuple[List[str], PortBridges]:
    """Errors (all of them) and, per hypervisor, the bridge of each VM port."""
    errors: List[str] = []
    bridges: PortBridges = {}
    vms = [w for w in fleet.workloads if w.interface is not None]
    errors += _duplicates(vms, hostvars, "interface", lambda w: (w.host, w.interface), "port")
    errors += _duplicates([w for w in vms if w.mac], hostvars, "mac", lambda w: w.mac, "MAC")
    for host in sorted({w.host for w in vms}):
        found, host_errors = _host_ports(host, [w for w in vms if w.host == host], hostvars)
        errors += host_errors
        bridges[host] = found
    return errors, bridges


def _duplicates(vms: List[Workload], hostvars, name: str, key, what: str) -> List[str]:
    first: Dict[Any, Workload] = {}
    errors = []
    for vm in vms:
        other = first.setdefault(key(vm), vm)
        if other is not vm:
            errors.append("inventory host %s: %s: %s %s is also the %s of %s/%s (inventory host %s)" % (
                vm.host, field_of(hostvars, vm, name), what, getattr(vm, name), what, other.namespace, other.name,
                other.host))
    return errors


def _host_ports(host: str, vms: List[Workload], hostvars) -> Tuple[Dict[str, str], List[str]]:
    facts = hostvars.get(host, {}).get(FACTS_VARIABLE)
    if not isinstance(facts, Mapping) or "ports" not in facts:
        return {}, ["inventory host %s: netpol_workloads: the host's bridge ports were not read (%s is missing): "
                    "run the enforce role, which reads them with netpol.fleet.netpol_bridge state=query"
                    % (host, FACTS_VARIABLE)]
    if not facts.get("br_netfilter"):
        return {}, ["inventory host %s: netpol_workloads: br_netfilter is not loaded on the host, so iptables "
                    "cannot filter its bridged VM traffic; load it (modprobe br_netfilter)" % host]
    found: Dict[str, str] = {}
    errors = []
    for vm in vms:
        refusal = _port_refusal(vm, facts)
        if refusal:
            errors.append("inventory host %s: %s: %s" % (host, field_of(hostvars, vm, "interface"), refusal))
        else:
            found[vm.interface or ""] = facts["ports"][vm.interface]
    return found, errors


def _port_refusal(vm: Workload, facts: Mapping[str, Any]) -> str:
    """Why the VM's port cannot be enforced ('' when it can)."""
    if vm.interface in (facts.get("missing") or ()) or vm.interface not in facts["ports"]:
        return "port %s of VM %s/%s does not exist on the host" % (vm.interface, vm.namespace, vm.name)
    if not facts["ports"][vm.interface]:
        return "%s of VM %s/%s is not a port of any bridge" % (vm.interface, vm.namespace, vm.name)
    if facts["ports"][vm.interface] in (facts.get("vlan_aware") or ()):
        return _vlan_refusal(vm, facts)
    return ""


def _vlan_refusal(vm: Workload, facts: Mapping[str, Any]) -> str:
    """Why a VM port on a VLAN-aware bridge cannot be enforced ('' for an access port)."""
    bridge = facts["ports"][vm.interface]
    carries = (facts.get("vlans") or {}).get(vm.interface)
    if access_vlan(carries) is None:
        return ("port %s of VM %s/%s on the VLAN-aware bridge %s (vlan_filtering 1) carries %s: a VM port there must "
                "be an access port (exactly one VLAN, its PVID, egress untagged); a VM choosing its VLANs by tagging "
                "is not supported" % (vm.interface, vm.namespace, vm.name, bridge,
                                      describe(carries) if carries else "VLANs not read"))
    return ""


def bridge_vlans(hostvars: Mapping[str, Mapping[str, Any]], bridges: PortBridges) -> BridgeVlans:
    """Per hypervisor, the VLANs of every port of its VLAN-aware bridges that carry VMs (for compile's
    conntrack zones per VLAN), as its query read them."""
    found: BridgeVlans = {}
    for host, ports in bridges.items():
        facts = hostvars.get(host, {}).get(FACTS_VARIABLE) or {}
        aware = set(facts.get("vlan_aware") or ()) & set(ports.values())
        vlans = {port: dict(v, bridge=v.get("bridge") or ports.get(port)) for port, v in (facts.get("vlans") or {}).items()}
        found[host] = {port: v for port, v in vlans.items() if v["bridge"] in aware}
    return found


UPLINKS_VARIABLE = "netpol_bridge_uplinks"
DROP_VARIABLE = "netpol_bridge_drop_unmanaged"
Uplinks = Dict[str, Dict[str, Tuple[str, ...]]]  # hypervisor -> bridge -> its uplink ports


def uplink_ports(value: Any) -> List[str]:
    """Every port named in a netpol_bridge_uplinks value (to read where they are), whatever its shape."""
    if not isinstance(value, Mapping):
        return []
    return [p for ports in value.values() if isinstance(ports, list) for p in ports if isinstance(p, str)]


def check_uplinks(hostvars: Mapping[str, Mapping[str, Any]], bridges: PortBridges,
                  drop_unmanaged: bool) -> Tuple[List[str], Uplinks]:
    """netpol_bridge_uplinks of each hypervisor: bridge -> the ports that connect it to the network,
    which netpol_bridge_drop_unmanaged never drops. With the option on, every bridge carrying VMs must
    be listed (`[]` for one without an uplink): an uplink left out would be dropped as an unknown port."""
    errors: List[str] = []
    uplinks: Uplinks = {}
    for host in sorted(hostvars):
        value = hostvars[host].get(UPLINKS_VARIABLE)
        managed = sorted(set(bridges.get(host, {}).values()))
        if value is not None:
            host_errors, uplinks[host] = _host_uplinks(host, value, bridges.get(host, {}), hostvars[host])
            errors += host_errors
        if drop_unmanaged:
            errors += [_unlisted(host, bridge) for bridge in managed if bridge not in (uplinks.get(host) or {})]
    return errors, uplinks


def _unlisted(host: str, bridge: str) -> str:
    return ("inventory host %s: %s: bridge %s carries VMs of netpol_workloads but is not listed: with %s every port "
            "of it that is not a VM's is dropped, its uplink too; list its uplink ports (%s: [eth1]), or %s: [] for a "
            "bridge without one" % (host, UPLINKS_VARIABLE, bridge, DROP_VARIABLE, bridge, bridge))


def _host_uplinks(host: str, value: Any, vm_bridges: Mapping[str, str],
                  host_vars: Mapping[str, Any]) -> Tuple[List[str], Dict[str, Tuple[str, ...]]]:
    where = "inventory host %s: %s" % (host, UPLINKS_VARIABLE)
    if not isinstance(value, Mapping) or not all(isinstance(v, list) and all(isinstance(p, str) for p in v)
                                                 for v in value.values()):
        return ["%s: must map each bridge to the list of its uplink ports, like {br-vlan10: [bond0]}" % where], {}
    managed = sorted(set(vm_bridges.values()))
    facts = host_vars.get(FACTS_VARIABLE) if isinstance(host_vars.get(FACTS_VARIABLE), Mapping) else {}
    found = facts.get("ports") or {}
    errors: List[str] = []
    for bridge, ports in sorted(value.items(), key=lambda item: str(item[0])):
        if bridge not in managed:
            errors.append("%s.%s: %s carries no VM of netpol_workloads on this host (its bridges with VMs: %s)" % (
                where, bridge, bridge, ", ".join(managed) or "none"))
            continue
        for i, port in enumerate(ports):
            at = "%s.%s[%d]" % (where, bridge, i)
            if port in vm_bridges:
                errors.append("%s: %s is a VM's port (netpol_workloads), not an uplink" % (at, port))
            elif port not in found:
                errors.append("%s: port %s does not exist on the host" % (at, port))
            elif found[port] != bridge:
                errors.append("%s: %s is not a port of %s (%s)" % (
                    at, port, bridge, "it is a port of %s" % found[port] if found[port] else "it is on no bridge"))
    return errors, {str(b): tuple(p) for b, p in value.items()}
