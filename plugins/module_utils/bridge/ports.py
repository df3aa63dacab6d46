# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bridge-mode input checks on the controller, before any host changes.

The VMs of netpol_workloads against each other (one port and one MAC per VM) and against what
each hypervisor reported (netpol.fleet.netpol_bridge state=query, registered as
`netpol_bridge_facts`): the port exists, it is a port of a bridge, br_netfilter is there.
Out come the errors, each naming the inventory host and the field, and each hypervisor's
port -> bridge map for compile. Pure Python, standard library only.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Tuple

from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import Fleet, Workload

FACTS_VARIABLE = "netpol_bridge_facts"

PortBridges = Dict[str, Dict[str, str]]  # hypervisor -> port -> bridge


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
        where = "inventory host %s: %s" % (host, field_of(hostvars, vm, "interface"))
        if vm.interface in (facts.get("missing") or ()) or vm.interface not in facts["ports"]:
            errors.append("%s: port %s of VM %s/%s does not exist on the host" % (where, vm.interface, vm.namespace, vm.name))
        elif not facts["ports"][vm.interface]:
            errors.append("%s: %s of VM %s/%s is not a port of any bridge" % (where, vm.interface, vm.namespace, vm.name))
        elif facts["ports"][vm.interface] in (facts.get("vlan_aware") or ()):
            errors.append("%s: the bridge %s of VM %s/%s filters VLANs (vlan_filtering 1): VLAN-aware bridges are "
                          "not supported by this release (one conntrack zone per bridge would join its VLANs); use "
                          "a bridge per VLAN" % (where, facts["ports"][vm.interface], vm.namespace, vm.name))
        else:
            found[vm.interface or ""] = facts["ports"][vm.interface]
    return found, errors
