# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet from inventory variables: host mode, bridge mode, namespaces, and every input error."""

from __future__ import annotations

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.engine.errors import InputErrors
from ansible_collections.netpol.fleet.plugins.module_utils.engine.fleet import load_fleet
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import METADATA_NAME, NamedPort, Namespace, Workload

DB1 = {
    "netpol_namespace": "billing",
    "netpol_labels": {"app": "db"},
    "netpol_addresses": ["10.0.0.5/24", "FD00:0:0::5"],
    "netpol_ports": [{"name": "pg", "port": 5432}, {"name": "dns", "port": 53, "protocol": "UDP"},
                     {"name": "dns", "port": 53, "protocol": "TCP"}],
}


def test_host_mode_workload():
    fleet = load_fleet({"db1": DB1}, {})
    assert fleet.workloads == (Workload(
        name="db1", namespace="billing", labels=(("app", "db"),), addresses=("10.0.0.5", "fd00::5"),
        ports=(NamedPort("pg", 5432), NamedPort("dns", 53, "UDP"), NamedPort("dns", 53, "TCP")), host="db1",
    ),)
    assert fleet.node_addresses == (("db1", ("10.0.0.5", "fd00::5")),)


def test_addresses_fall_back_to_facts_without_link_local_or_loopback():
    host = {
        "netpol_namespace": "shop",
        "ansible_all_ipv4_addresses": ["10.0.0.6", "169.254.0.9", "127.0.0.1"],
        "ansible_all_ipv6_addresses": ["fe80::1", "fd00::6", "::1"],
        "ansible_host": "192.0.2.1",
    }
    (web,) = load_fleet({"web1": host}, {}).workloads
    assert web.addresses == ("10.0.0.6", "fd00::6")


def test_node_addresses_for_every_host():
    hosts = {
        "ctl": {},
        "hv1": {"ansible_host": "192.0.2.10"},
        "netns1": {"ansible_host": "np-lab-a"},  # a namespace name, not an address
        "db1": DB1,
    }
    assert load_fleet(hosts, {}).node_addresses == (
        ("ctl", ()), ("db1", ("10.0.0.5", "fd00::5")), ("hv1", ("192.0.2.10",)), ("netns1", ()),
    )


VM = {"name": "vm", "namespace": "a", "addresses": ["10.0.0.1"], "interface": "v0", "mac": "52:54:00:00:00:01"}


def test_anti_spoofing_knobs_of_a_vm_port():
    fleet = load_fleet({"hv": {"netpol_workloads": [
        dict(VM, antispoof="mac_only", allowed_addresses=["10.0.0.64/26", "2001:db8::7"]),
        dict(VM, name="vm2", addresses=["10.0.0.2"], interface="v1", mac=None, antispoof="off"),
    ]}}, None)
    first, second = fleet.workloads
    assert (first.antispoof, first.allowed_addresses) == ("mac_only", ("10.0.0.64/26", "2001:db8::7"))
    assert first.addresses == ("10.0.0.1",)  # allowed addresses never become the VM's own: no peer set holds them
    assert (second.antispoof, second.mac) == ("off", None)
    assert load_fleet({"hv": {"netpol_workloads": [VM]}}, None).workloads[0].antispoof == "full"


def test_bridge_mode_workloads_belong_to_their_hypervisor():
    hv1 = {
        "netpol_addresses": ["192.0.2.10"],
        "netpol_workloads": [
            {"name": "vm2", "namespace": "shop", "labels": {"app": "web"}, "addresses": ["10.0.1.2"],
             "interface": "vnet1", "mac": "52:54:00:AB:CD:EF", "ports": [{"name": "http", "port": 8080}]},
            {"name": "vm1", "namespace": "shop", "addresses": ["10.0.1.1", "fd00:1::1"], "interface": "vnet0",
             "mac": "52:54:00:00:00:01"},
        ],
    }
    fleet = load_fleet({"hv1": hv1}, None)
    assert fleet.workloads == (
        Workload("vm1", "shop", (), ("10.0.1.1", "fd00:1::1"), (), host="hv1", interface="vnet0",
                 mac="52:54:00:00:00:01"),
        Workload("vm2", "shop", (("app", "web"),), ("10.0.1.2",), (NamedPort("http", 8080),), host="hv1",
                 interface="vnet1", mac="52:54:00:ab:cd:ef"),
    )
    assert fleet.node_addresses == (("hv1", ("192.0.2.10",)),)


def test_namespaces_declared_and_used_all_carry_their_name():
    fleet = load_fleet({"db1": DB1}, {"shop": {"labels": {"team": "retail"}}, "empty": None,
                                      "ops": {"labels": {METADATA_NAME: "ops"}}})
    assert fleet.namespaces == (
        Namespace("billing", ((METADATA_NAME, "billing"),)),
        Namespace("empty", ((METADATA_NAME, "empty"),)),
        Namespace("ops", ((METADATA_NAME, "ops"),)),
        Namespace("shop", ((METADATA_NAME, "shop"), ("team", "retail"))),
    )


@pytest.mark.parametrize(
    "hosts, namespaces, message",
    [
        ({"db1": dict(DB1, netpol_addresses=["10.0.0.5", "fd00::zz"])}, {},
         "inventory host db1: netpol_addresses[1]: 'fd00::zz' is not an IP address"),
        ({"db1": dict(DB1, netpol_addresses="10.0.0.5")}, {},
         "inventory host db1: netpol_addresses: must be an array, not string"),
        ({"db1": dict(DB1, netpol_addresses=["10.0.0.5/40"])}, {},
         "inventory host db1: netpol_addresses[0]: '10.0.0.5/40' is not an IP address: prefix length"),
        ({"db1": dict(DB1, netpol_addresses=None)}, {},
         "inventory host db1: netpol_addresses: Required value: no addresses; set netpol_addresses or gather facts"),
        ({"db1": dict(DB1, netpol_addresses=[])}, {},
         "inventory host db1: netpol_addresses: Required value: no addresses"),
        ({"db1": dict(DB1, netpol_addresses=["db1.example.com"])}, {},
         "inventory host db1: netpol_addresses[0]: 'db1.example.com' is not an IP address"),
        ({"db1": DB1, "db2": dict(DB1, netpol_addresses=["10.0.0.9", "fd00::5"])}, {},
         "inventory host db2: netpol_addresses[1]: address fd00::5 is also used by workload billing/db1 "
         "(inventory host db1)"),
        ({"db1": dict(DB1, netpol_namespace="Billing")}, {},
         "inventory host db1: netpol_namespace: invalid value 'Billing': a lowercase RFC 1123 label"),
        ({"db1": dict(DB1, netpol_labels={"app": True})}, {},
         "inventory host db1: netpol_labels.app: must be a string, not boolean True (quote it in YAML)"),
        ({"db1": dict(DB1, netpol_labels={"app!": "db"})}, {},
         "inventory host db1: netpol_labels.app!: invalid value 'app!': name part must consist"),
        ({"db1": dict(DB1, netpol_ports=[{"name": "pg", "port": 70000}])}, {},
         "inventory host db1: netpol_ports[0].port: invalid value 70000: must be between 1 and 65535"),
        ({"db1": dict(DB1, netpol_ports=[{"name": "Pg", "port": 1}])}, {},
         "inventory host db1: netpol_ports[0].name: invalid value 'Pg'"),
        ({"db1": dict(DB1, netpol_ports=[{"name": "pg", "port": 1, "protocol": "tcp"}])}, {},
         "inventory host db1: netpol_ports[0].protocol: Unsupported value 'tcp'"),
        ({"db1": dict(DB1, netpol_ports=[{"name": "pg", "port": 1}, {"name": "pg", "port": 2}])}, {},
         "inventory host db1: netpol_ports[1].name: Duplicate value 'pg' for protocol TCP"),
        ({"db1": dict(DB1, netpol_ports=[{"name": "pg", "port": "5432"}])}, {},
         "inventory host db1: netpol_ports[0].port: must be an integer, not string '5432'"),
        ({"db1": dict(DB1, netpol_ports=[{"name": "pg", "port": 1, "number": 1}])}, {},
         "inventory host db1: netpol_ports[0].number: unknown field 'number'"),
        ({"hv": {"netpol_workloads": [{"name": "vm", "namespace": "a", "addresses": [], "interface": "v0", "mac": "52:54:00:00:00:01"}]}}, {},
         "inventory host hv: netpol_workloads[0].addresses: Required value: at least one address"),
        ({"hv": {"netpol_workloads": [{"name": "vm", "namespace": "a", "addresses": ["10.0.0.1"], "mac": "52:54:00:00:00:01"}]}},
         {}, "inventory host hv: netpol_workloads[0].interface: Required value"),
        ({"hv": {"netpol_workloads": [{"name": "vm", "namespace": "a", "addresses": ["10.0.0.1"],
                                       "interface": "a-very-long-ifname", "mac": "52:54:00:00:00:01"}]}}, {},
         "inventory host hv: netpol_workloads[0].interface: invalid value 'a-very-long-ifname'"),
        ({"hv": {"netpol_workloads": [{"name": "vm", "namespace": "a", "addresses": ["10.0.0.1"], "interface": "v0",
                                       "mac": "52:54:00:zz:00:01"}]}}, {},
         "inventory host hv: netpol_workloads[0].mac: invalid value '52:54:00:zz:00:01'"),
        ({"hv": {"netpol_workloads": [{"name": "vm", "namespace": "a", "addresses": ["10.0.0.1"], "interface": "v0",
                                       "mac": "52:54:00:00:00:01", "vlan": 5}]}}, {},
         "inventory host hv: netpol_workloads[0].vlan: unknown field 'vlan'"),
        ({"hv": {"netpol_workloads": [{"name": "db1", "namespace": "billing", "addresses": ["10.9.0.1"],
                                       "interface": "v0", "mac": "52:54:00:00:00:01"}]}, "db1": DB1}, {},
         "inventory host hv: billing/db1: duplicate workload name in namespace 'billing': also on inventory host db1"),
        ({"hv": {"netpol_workloads": [{"name": "", "namespace": "a", "addresses": ["10.0.0.1"], "interface": "v0", "mac": "52:54:00:00:00:01"}]}},
         {}, "inventory host hv: netpol_workloads[0].name: Required value"),
        ({"hv": {"netpol_workloads": ["vm1"]}}, {}, "inventory host hv: netpol_workloads[0]: must be an object, not string"),
        ({"hv": {"netpol_workloads": [dict(VM, mac=None)]}}, {},
         "inventory host hv: netpol_workloads[0].mac: Required value: anti-spoofing checks the VM's source MAC"),
        ({"hv": {"netpol_workloads": [dict(VM, antispoof="strict")]}}, {},
         "inventory host hv: netpol_workloads[0].antispoof: Unsupported value: 'strict': supported values: "
         "'full', 'mac_only', 'off'"),
        ({"hv": {"netpol_workloads": [dict(VM, antispoof=True)]}}, {},
         "inventory host hv: netpol_workloads[0].antispoof: must be a string, not boolean"),
        ({"hv": {"netpol_workloads": [dict(VM, allowed_addresses="10.0.0.9")]}}, {},
         "inventory host hv: netpol_workloads[0].allowed_addresses: must be an array, not string"),
        ({"hv": {"netpol_workloads": [dict(VM, allowed_addresses=["10.0.0.9", "10.0.0.300"])]}}, {},
         "inventory host hv: netpol_workloads[0].allowed_addresses[1]: invalid value '10.0.0.300'"),
        ({"hv": {"netpol_workloads": [dict(VM, allowed_addresses=["10.0.0.9/24"])]}}, {},
         "inventory host hv: netpol_workloads[0].allowed_addresses[0]: invalid value '10.0.0.9/24': must not have host bits"),
        ({"hv": {"netpol_workloads": [dict(VM, allowed_addresses=["::/0"])]}}, {},
         "inventory host hv: netpol_workloads[0].allowed_addresses[0]: invalid value '::/0': allows every source; "
         "use antispoof: mac_only instead"),
        ({"hv": {"netpol_workloads": {"name": "vm"}}}, {},
         "inventory host hv: netpol_workloads: must be an array, not object"),
        ({}, {"Shop": {}}, "netpol_namespaces: Shop: invalid value 'Shop'"),
        ({}, {"shop": {"labels": {METADATA_NAME: "other"}}},
         "netpol_namespaces: shop: labels.kubernetes.io/metadata.name: must be the namespace name 'shop'"),
        ({}, {"shop": {"lables": {}}}, "netpol_namespaces: shop: lables: unknown field 'lables'"),
        ({}, {"shop": {"labels": {"team": "a b"}}}, "netpol_namespaces: shop: labels.team: invalid value 'a b'"),
    ],
)
def test_input_errors_name_host_and_variable(hosts, namespaces, message):
    with pytest.raises(InputErrors) as raised:
        load_fleet(hosts, namespaces)
    assert len(raised.value.errors) == 1, str(raised.value)
    assert str(raised.value).startswith(message)


def test_all_fleet_errors_are_reported_together():
    hosts = {
        "a": dict(DB1, netpol_addresses=["bad"]),
        "b": dict(DB1, netpol_namespace="B"),
        "hv": {"netpol_workloads": [{"name": "vm", "mac": "52:54:00:00:00:01"}]},
    }
    with pytest.raises(InputErrors) as raised:
        load_fleet(hosts, {"X": {}})
    assert [(e.source, e.field) for e in raised.value.errors] == [
        ("inventory host a", "netpol_addresses[0]"),
        ("inventory host b", "netpol_namespace"),
        ("inventory host hv", "netpol_workloads[0].namespace"),
        ("inventory host hv", "netpol_workloads[0].addresses"),
        ("inventory host hv", "netpol_workloads[0].interface"),
        ("netpol_namespaces", ""),
    ]
