# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A snapshot of recorded responses as the engine's IR, merged with an inventory."""

from __future__ import annotations

import copy

import pytest

from kubernetes_recorded import RecordedServer

from ansible_collections.netpol.fleet.plugins.module_utils.engine.compile import compile_fleet
from ansible_collections.netpol.fleet.plugins.module_utils.engine.fleet import load_fleet
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import NamedPort, PortSpec
from ansible_collections.netpol.fleet.plugins.plugin_utils.kubernetes.convert import (
    cluster_inputs,
    is_peer_only,
    vmi_hosts,
)
from ansible_collections.netpol.fleet.plugins.plugin_utils.kubernetes.snapshot import VMIS, take_snapshot

# web-host is the pod shop/web (one of its addresses is the pod's IP); node-a is a Node.
HOSTVARS = {
    "web-host": {"netpol_addresses": ["10.244.1.6", "fd00:10:244:1::6"]},
    "node-a": {"netpol_addresses": ["192.0.2.10"]},
}


@pytest.fixture
def server() -> RecordedServer:
    return RecordedServer()


def inputs(server, hostvars=None, declared=()):
    hostvars = HOSTVARS if hostvars is None else hostvars
    inventory = load_fleet(hostvars, {name: {} for name in declared})
    return cluster_inputs(take_snapshot(server), inventory, hostvars, declared)


def workload(found, namespace, name):
    return next(w for w in found.fleet.workloads if (w.namespace, w.name) == (namespace, name))


@pytest.fixture
def no_kubevirt(server):
    server.pages[VMIS.path] = [{"metadata": {"resourceVersion": "1"}, "items": []}]
    return server


def test_policies_of_current_releases_parse_with_end_port_and_named_ports(no_kubevirt):
    found = inputs(no_kubevirt)
    assert found.errors == []
    (policy,) = found.policies
    assert policy.key == "shop/web-ingress"
    assert policy.origin == "kubernetes:shop/web-ingress"
    assert policy.ingress[0].ports == (PortSpec("TCP", 8000, 8010), PortSpec("TCP", "http"))


def test_namespaces_carry_their_name_label_even_where_the_server_adds_none(no_kubevirt):
    for page in no_kubevirt.pages["/api/v1/namespaces"]:
        for item in page["items"]:
            item["metadata"]["labels"].pop("kubernetes.io/metadata.name")  # as 1.20 serves them
    found = inputs(no_kubevirt)
    shop = next(n for n in found.fleet.namespaces if n.name == "shop")
    assert shop.label_map == {"kubernetes.io/metadata.name": "shop", "team": "retail"}


def test_running_pods_are_dual_stack_workloads_with_named_ports(no_kubevirt):
    found = inputs(no_kubevirt)
    web = workload(found, "shop", "web")
    assert web.addresses == ("10.244.1.6", "fd00:10:244:1::6")
    assert web.ports == (NamedPort("http", 8080, "TCP"),)
    assert web.label_map == {"app": "web"}


def test_finished_pending_and_host_network_pods_are_no_workloads(no_kubevirt):
    found = inputs(no_kubevirt)
    assert sorted(w.name for w in found.fleet.workloads) == ["client", "web"]


def test_a_pod_whose_ip_is_an_inventory_hosts_address_is_enforced_there_others_are_peers_only(no_kubevirt):
    found = inputs(no_kubevirt)
    assert workload(found, "shop", "web").host == "web-host"
    client = workload(found, "shop", "client")
    assert is_peer_only(client)
    states = compile_fleet(found.fleet, found.policies, hosts=["web-host", "node-a"])
    assert sorted(states) == ["node-a", "web-host"]
    rules = [rule for table in states["web-host"].tables for chain in table.chains for rule in chain.rules]
    # endPort rendered, and the named port resolved on the pod
    assert any("--dports 8000:8010,8080" in rule for rule in rules)
    members = {m.entry for s in states["web-host"].sets for m in s.members}
    assert "10.244.1.5" in members  # the peer-only client is in the peer set


def test_node_addresses_are_node_addresses_of_the_mapped_host(no_kubevirt):
    found = inputs(no_kubevirt)
    nodes = dict(found.fleet.node_addresses)
    assert nodes["node-a"] == ("192.0.2.10", "2001:db8::10")  # merged with the Node's IPv6
    assert nodes["hv-1"] == ("192.0.2.20",)  # no inventory host: listed by Node name
    assert found.origins[workload(found, "shop", "web")].node == "node-a"


def test_netpol_node_name_maps_a_node_to_a_differently_named_host(no_kubevirt):
    hostvars = dict(HOSTVARS, hypervisor1={"netpol_addresses": ["198.51.100.1"], "netpol_node_name": "hv-1"})
    nodes = dict(inputs(no_kubevirt, hostvars).fleet.node_addresses)
    assert nodes["hypervisor1"] == ("198.51.100.1", "192.0.2.20")


def test_vmis_off_the_inventory_are_peers_with_global_addresses_on_both_migration_nodes(server):
    found = inputs(server)
    assert found.errors == []
    vms = [w for w in found.fleet.workloads if w.name == "db-vm"]
    assert sorted(w.host for w in vms) == ["kubernetes:vmi/shop/db-vm@hv-1", "kubernetes:vmi/shop/db-vm@hv-2"]
    assert vms[0].addresses == ("10.0.5.9", "fd00:5::9")  # prefix lengths dropped, link-local left out
    assert vms[0].mac == "52:54:00:ab:cd:01"
    assert vms[0].ports == (NamedPort("pg", 5432, "TCP"),)


def hypervisor(fdb):
    """hv-1 in the inventory, with what netpol_bridge state=query fdb=true reported there."""
    return dict(HOSTVARS, **{"hv-1": {"netpol_addresses": ["192.0.2.20"],
                                      "netpol_bridge_facts": {"ports": {}, "fdb": fdb}}})


def settled(server):
    """db-vm with its live migration finished: on hv-1 only."""
    vmi = server.pages[VMIS.path][0]["items"][0]
    vmi["status"]["migrationState"]["completed"] = True
    return server


def test_a_vmi_on_an_inventory_hypervisor_is_a_vm_on_the_port_its_mac_is_behind(server):
    found = inputs(settled(server), hypervisor({"52:54:00:ab:cd:01": ["vnet7"], "52:54:00:00:00:99": ["vnet1"]}))
    assert found.errors == []
    vm = workload(found, "shop", "db-vm")
    assert (vm.host, vm.interface, vm.mac, vm.antispoof) == ("hv-1", "vnet7", "52:54:00:ab:cd:01", "full")
    assert vm.addresses == ("10.0.5.9", "fd00:5::9")
    assert vm.allowed_addresses == ("fe80::5054:ff:feab:cd01",)  # link-local: anti-spoofing only


def test_a_vmi_whose_mac_no_bridge_learned_stops_the_run_naming_vmi_host_and_mac(server):
    found = inputs(settled(server), hypervisor({"52:54:00:00:00:99": ["vnet1"]}))
    assert found.errors == [
        "kubernetes VirtualMachineInstance shop/db-vm: runs on node hv-1, inventory host hv-1: status.interfaces[].mac: "
        "no MAC of the VMI (52:54:00:ab:cd:01) is behind a port of the host's bridges (its bridge forwarding database "
        "has no entry: the VM sent no frame within the bridge's ageing time, or it is not bridged on this host), so "
        "its traffic cannot be filtered. No host was changed"]


def test_without_looking_for_ports_a_vmi_is_its_hypervisors_workload_all_the_same(server):
    hostvars = hypervisor({})
    inventory = load_fleet(hostvars, {})
    found = cluster_inputs(take_snapshot(settled(server)), inventory, hostvars, find_ports=False)
    assert found.errors == []
    assert workload(found, "shop", "db-vm").host == "hv-1"


def test_a_mac_behind_two_ports_or_an_unread_fdb_stops_the_run(server):
    (two,) = inputs(settled(server), hypervisor({"52:54:00:ab:cd:01": ["vnet1", "vnet7"]})).errors
    assert "status.interfaces[0].mac: MAC 52:54:00:ab:cd:01 is behind several bridge ports of the host (vnet1, vnet7)" in two
    hostvars = hypervisor({})
    del hostvars["hv-1"]["netpol_bridge_facts"]
    (unread,) = inputs(settled(server), hostvars).errors
    assert unread.startswith("kubernetes VirtualMachineInstance shop/db-vm: runs on node hv-1, inventory host hv-1: its "
                             "bridge forwarding database was not read: the enforce role reads it only on the hosts VMIs "
                             "ran on when it listed them")
    assert unread.endswith("the VMI came to this node since, or the host is not in this run's batch; run again (with "
                           "the host). No host was changed")


def test_the_hosts_to_read_are_those_vmis_run_on_mapped_as_compile_maps_them(server):
    hostvars = dict(hypervisor({}), hypervisor2={"netpol_addresses": ["198.51.100.2"], "netpol_node_name": "hv-2"})
    snapshot = take_snapshot(server)  # db-vm migrating from hv-1 to hv-2: both nodes' hosts
    assert vmi_hosts(snapshot, load_fleet(hostvars, {}), hostvars) == ["hv-1", "hypervisor2"]
    assert vmi_hosts(take_snapshot(settled(server)), load_fleet(hostvars, {}), hostvars) == ["hv-1"]
    assert vmi_hosts(snapshot, load_fleet(HOSTVARS, {}), HOSTVARS) == []  # its nodes are no inventory hosts


def test_a_finished_vmi_needs_no_host_read(server):
    hostvars = hypervisor({})
    server.pages[VMIS.path][0]["items"][0]["status"]["phase"] = "Succeeded"
    assert vmi_hosts(take_snapshot(server), load_fleet(hostvars, {}), hostvars) == []


def test_an_invalid_cluster_policy_is_named_as_a_file_policy_would_be(no_kubevirt):
    item = no_kubevirt.pages["/apis/networking.k8s.io/v1/networkpolicies"][0]["items"][0]
    item["spec"]["ingress"][0]["ports"][0]["endPort"] = 10
    assert inputs(no_kubevirt).errors == [
        "kubernetes networkpolicies: shop/web-ingress: spec.ingress[0].ports[0].endPort: must be >= port "
        "(8000), not 10"]


def test_an_inventory_workload_that_is_also_a_pod_is_an_error(no_kubevirt):
    hostvars = copy.deepcopy(HOSTVARS)
    hostvars["web-host"].update(netpol_namespace="shop")
    (error,) = inputs(no_kubevirt, hostvars).errors
    assert error.startswith("inventory host web-host: netpol_namespace: the host is also the cluster's Pod shop/web")


def test_two_live_pods_with_one_address_are_an_error(no_kubevirt):
    pages = no_kubevirt.pages["/api/v1/pods"]
    pages[1]["items"][0]["status"]["podIPs"] = [{"ip": "10.244.1.5"}]
    assert inputs(no_kubevirt).errors == [
        "kubernetes Pod shop/web: address 10.244.1.5 is also used by Pod shop/client"]


def test_a_namespace_in_the_cluster_and_netpol_namespaces_is_an_error(no_kubevirt):
    (error,) = inputs(no_kubevirt, declared=("shop",)).errors
    assert error.startswith("netpol_namespaces: shop: also a Namespace of the cluster")
