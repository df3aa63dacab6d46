# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""netns_lab: validation of the lab description and the ip commands planned from what the kernel shows."""

from __future__ import annotations

import re

import pytest

from ansible_collections.netpol.fleet.plugins.modules.netns_lab import (
    Host, LabError, Observed, parse_hosts, parse_routers, plan_absent, plan_present, uplink_name)

WEB = Host("lab-web", "lab-web", {"10.42.0.11/24", "fd42::11/64"})
BUILT = Observed(namespaces={"lab-sw", "lab-web"}, bridge=True, ports={"lab-web"},
                 links={"lab-web": True}, addresses={"lab-web": {"10.42.0.11/24", "fd42::11/64"}})
NOTHING = Observed(namespaces=set(), bridge=False, ports=set(), links={}, addresses={})


def params(*hosts, state="present"):
    return {"state": state, "switch": "lab-sw", "prefix4": 24, "prefix6": 64, "hosts": [
        dict({"bridges": [], "attach": None}, **h) for h in hosts]}


def commands(steps):
    return [" ".join(step.argv) for step in steps]


def test_addresses_without_prefix_get_the_default_ones():
    hosts = parse_hosts(params({"name": "a", "namespace": "a", "addresses": ["10.0.0.1", "FD00::0001"]}))
    assert hosts == [Host("a", "a", {"10.0.0.1/24", "fd00::1/64"})]


@pytest.mark.parametrize("hosts, message", [
    ([{"name": "a", "namespace": "a", "addresses": []}], "host a: netpol_addresses is missing or empty"),
    ([{"name": "a", "namespace": "a", "addresses": None}], "host a: netpol_addresses is missing or empty"),
    ([{"name": "a", "namespace": "a", "addresses": ["10.0.0.1/24"]},
      {"name": "b", "namespace": "b", "addresses": ["10.0.0.1/16"]}],
     "host b: netpol_addresses: 10.0.0.1 is also an address of host a"),
    ([{"name": "a", "namespace": "a", "addresses": ["fd00::1/129"]}],
     "host a: netpol_addresses: 'fd00::1/129' is not an IPv4 or IPv6 address"),
    ([{"name": "a", "namespace": "a", "addresses": ["10.0.0.1/08"]}],
     "host a: netpol_addresses: '10.0.0.1/08' is not an IPv4 or IPv6 address: must not have leading 0s"),
    ([{"name": "a", "namespace": "a", "addresses": ["::ffff:10.0.0.1/64"]}],
     "host a: netpol_addresses: '::ffff:10.0.0.1/64' is not an IPv4 or IPv6 address: must not be an IPv4-mapped"),
    ([{"name": "a", "namespace": "a234567890123456", "addresses": ["10.0.0.1"]}],
     "host a: ansible_host 'a234567890123456' is 16 characters"),
    ([{"name": "a", "namespace": "a b", "addresses": ["10.0.0.1"]}], "host a: ansible_host 'a b' is not a usable"),
    ([{"name": "a", "namespace": "lab-sw", "addresses": ["10.0.0.1"]}],
     "host a: ansible_host 'lab-sw' is already the namespace of the switch"),
])
def test_bad_hosts_are_named_with_their_field(hosts, message):
    with pytest.raises(LabError, match="^" + message.replace("(", r"\(")):
        parse_hosts(params(*hosts))


def test_absent_needs_no_addresses():
    assert parse_hosts(params({"name": "a", "namespace": "a", "addresses": None}, state="absent"))


def test_from_nothing_everything_is_built_in_order():
    assert commands(plan_present([WEB], NOTHING, "lab-sw", "br0", "eth0")) == [
        "netns add lab-sw",
        "-n lab-sw link add br0 type bridge mcast_snooping 0",
        "-n lab-sw link set br0 up",
        "netns add lab-web",
        "-n lab-web link set lo up",
        "-n lab-web link add eth0 type veth peer name lab-web netns lab-sw",
        "-n lab-sw link set lab-web master br0 up",
        "-n lab-web link set eth0 up",
        "-n lab-web address add 10.42.0.11/24 dev eth0",
        "-n lab-web address add fd42::11/64 dev eth0 nodad",
    ]


def test_a_built_lab_plans_nothing():
    assert plan_present([WEB], BUILT, "lab-sw", "br0", "eth0") == []


def test_only_the_differences_are_planned():
    drifted = BUILT._replace(addresses={"lab-web": {"10.42.0.11/24", "10.42.0.99/24"}},
                             ports={"lab-web", "lab-old"}, namespaces={"lab-sw", "lab-web", "lab-old"})
    assert commands(plan_present([WEB], drifted, "lab-sw", "br0", "eth0")) == [
        "-n lab-sw link del lab-old",
        "netns del lab-old",
        "-n lab-web address del 10.42.0.99/24 dev eth0",
        "-n lab-web address add fd42::11/64 dev eth0 nodad",
    ]


def test_half_a_veth_pair_is_rebuilt():
    unplugged = BUILT._replace(ports=set())
    assert commands(plan_present([WEB], unplugged, "lab-sw", "br0", "eth0"))[:2] == [
        "-n lab-web link del eth0",
        "-n lab-web link add eth0 type veth peer name lab-web netns lab-sw",
    ]


def test_absent_removes_hosts_also_those_only_the_switch_remembers():
    seen = BUILT._replace(ports={"lab-web", "lab-gone"}, namespaces={"lab-sw", "lab-web", "lab-gone"})
    assert commands(plan_absent([WEB], seen, "lab-sw")) == [
        "-n lab-sw link del lab-gone", "netns del lab-gone",
        "-n lab-sw link del lab-web", "netns del lab-web",
        "netns del lab-sw",
    ]
    assert plan_absent([WEB], NOTHING, "lab-sw") == []


# ---- hypervisors with bridges, VMs on their ports ---------------------------------------------

HV = {"name": "lab-hv1", "namespace": "lab-hv1", "addresses": ["10.42.0.101/24"], "bridges": ["mgmt-br", "vlan20"]}
VM = {"name": "lab-vm1", "namespace": "lab-vm1", "addresses": ["10.20.0.1/24"],
      "attach": {"hypervisor": "lab-hv1", "bridge": "vlan20", "port": "vm1", "mac": "52:54:00:00:20:01"}}


def test_a_hypervisor_gets_its_bridges_uplinks_and_addresses_and_a_vm_its_port():
    hosts = parse_hosts(params(VM, HV))
    uplink = uplink_name("lab-hv1", "vlan20", 1)
    assert commands(plan_present(hosts, NOTHING, "lab-sw", "br0", "eth0")) == [
        "netns add lab-sw",
        "-n lab-sw link add br0 type bridge mcast_snooping 0",
        "-n lab-sw link set br0 up",
        "-n lab-sw link add vlan20 type bridge mcast_snooping 0",
        "-n lab-sw link set vlan20 up",
        "netns add lab-hv1",
        "-n lab-hv1 link set lo up",
        "netns exec lab-hv1 sysctl -qw net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0",
        "-n lab-hv1 link add mgmt-br type bridge mcast_snooping 0",
        "-n lab-hv1 link set mgmt-br up",
        "-n lab-hv1 link add lab-hv1 type veth peer name lab-hv1 netns lab-sw",
        "-n lab-hv1 link set lab-hv1 master mgmt-br up",
        "-n lab-sw link set lab-hv1 master br0 up",
        "-n lab-hv1 link add vlan20 type bridge mcast_snooping 0",
        "-n lab-hv1 link set vlan20 up",
        "-n lab-hv1 link add %s type veth peer name %s netns lab-sw" % (uplink, uplink),
        "-n lab-hv1 link set %s master vlan20 up" % uplink,
        "-n lab-sw link set %s master vlan20 up" % uplink,
        "-n lab-hv1 address add 10.42.0.101/24 dev mgmt-br",
        "netns add lab-vm1",
        "-n lab-vm1 link set lo up",
        "-n lab-vm1 link add eth0 address 52:54:00:00:20:01 type veth peer name vm1 netns lab-hv1",
        "-n lab-hv1 link set vm1 master vlan20 up",
        "-n lab-vm1 link set eth0 up",
        "-n lab-vm1 address add 10.20.0.1/24 dev eth0",
    ]


def test_a_built_hypervisor_and_vm_plan_nothing_and_a_changed_mac_is_set():
    hosts = parse_hosts(params(HV, VM))
    uplink = uplink_name("lab-hv1", "vlan20", 1)
    built = Observed(
        namespaces={"lab-sw", "lab-hv1", "lab-vm1"}, bridge=True, ports={"lab-hv1"},
        links={"lab-hv1": True, "lab-vm1": True},
        addresses={"lab-hv1": {"10.42.0.101/24"}, "lab-vm1": {"10.20.0.1/24"}},
        interfaces={"lab-sw": {"br0": {}, "vlan20": {}, "lab-hv1": {"master": "br0"}, uplink: {"master": "vlan20"}},
                    "lab-hv1": {"mgmt-br": {}, "vlan20": {}, "lab-hv1": {"master": "mgmt-br"},
                                uplink: {"master": "vlan20"}, "vm1": {"master": "vlan20"}},
                    "lab-vm1": {"eth0": {"address": "52:54:00:00:20:01"}}},
        nf_call_off={"lab-hv1"})
    assert plan_present(hosts, built, "lab-sw", "br0", "eth0") == []
    moved = built._replace(interfaces=dict(built.interfaces, **{"lab-vm1": {"eth0": {"address": "52:54:00:00:20:99"}}}))
    assert commands(plan_present(hosts, moved, "lab-sw", "br0", "eth0")) == [
        "-n lab-vm1 link set eth0 address 52:54:00:00:20:01"]


@pytest.mark.parametrize("change, message", [
    ({"attach": dict(VM["attach"], bridge="vlan30")}, "host lab-vm1: lab_vm.bridge: 'vlan30' is not a bridge of"),
    ({"attach": dict(VM["attach"], hypervisor="lab-nope")}, "host lab-vm1: lab_vm.bridge: 'vlan20' is not a bridge"),
    ({"attach": dict(VM["attach"], mac="52:54:00:00:20")}, "host lab-vm1: lab_vm.mac: '52:54:00:00:20' is not a MAC"),
    ({"attach": dict(VM["attach"], port="a-very-long-port-name")}, "host lab-vm1: lab_vm.port: 'a-very-long-port-name'"),
    ({"bridges": ["x"]}, "host lab-vm1: lab_vm: a host is a VM or a hypervisor"),
])
def test_bad_vms_are_named_with_their_field(change, message):
    with pytest.raises(LabError, match="^" + re.escape(message)):
        parse_hosts(params(HV, dict(VM, **change)))


def test_two_vms_may_not_share_a_port_or_a_mac():
    second = dict(VM, name="lab-vm2", namespace="lab-vm2", addresses=["10.20.0.2/24"])
    with pytest.raises(LabError, match=r"^host lab-vm2: lab_vm.port: 'vm1' is also the port of host lab-vm1"):
        parse_hosts(params(HV, VM, second))
    with pytest.raises(LabError, match=r"^host lab-vm2: lab_vm.mac: '52:54:00:00:20:01' is also the mac"):
        parse_hosts(params(HV, VM, dict(second, attach=dict(VM["attach"], port="vm2"))))


def test_a_router_in_the_switch_and_default_routes_through_it():
    hosts = parse_hosts(params(HV, dict(VM, gateways=["10.20.0.254"])))
    routers = parse_routers({"routers": {"vlan20": ["10.20.0.254"], "br0": ["fd42::fe"]}, "prefix4": 24, "prefix6": 64})
    planned = commands(plan_present(hosts, NOTHING, "lab-sw", "br0", "eth0", routers))
    assert planned[5:8] == ["-n lab-sw address add fd42::fe/64 dev br0 nodad",
                            "-n lab-sw address add 10.20.0.254/24 dev vlan20",
                            "netns exec lab-sw sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1"]
    assert planned[-1] == "-n lab-vm1 route replace default via 10.20.0.254"
    with pytest.raises(LabError, match=r"^lab_routers: br0: \['10.0.0.300'\] are not all"):
        parse_routers({"routers": {"br0": ["10.0.0.300"]}, "prefix4": 24, "prefix6": 64})
