# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import PrivilegedRule
from ansible_collections.netpol.fleet.plugins.module_utils.engine.privileged import (
    PrivilegedError,
    admits,
    host_bits_warnings,
    lockout_warnings,
    rules_from_vars,
)

LAB = {
    "netpol_controller_addresses": ["192.0.2.1"],
    "netpol_management_cidrs": ["198.51.100.0/24"],
    "netpol_control_plane_addresses": ["10.0.0.1", "fd00::1"],
    "netpol_node_addresses": ["10.0.0.1", "10.0.0.2", "fd00::1", "fd00::2"],
    "netpol_admin_cidrs": ["203.0.113.0/24"],
}


def by_name(rules):
    return {r.name: r for r in rules}


def test_ssh_is_kept_from_controller_and_management_cidrs():
    ssh = by_name(rules_from_vars(LAB))["ssh-management"]
    assert (ssh.direction, ssh.protocol, ssh.ports) == ("ingress", "TCP", (22, 22))
    assert ssh.cidrs == ("192.0.2.1/32", "198.51.100.0/24")


def test_apiserver_admits_nodes_and_admins_but_etcd_only_the_control_plane():
    rules = rules_from_vars(LAB)
    apiserver = [r for r in rules if r.direction == "ingress" and admits(r, "10.0.0.2", "TCP", 6443)]
    admin = [r for r in rules if r.direction == "ingress" and admits(r, "203.0.113.9", "TCP", 6443)]
    etcd_from_worker = [r for r in rules if r.direction == "ingress" and admits(r, "10.0.0.2", "TCP", 2380)]
    etcd_from_cp = [r for r in rules if r.direction == "ingress" and admits(r, "fd00::1", "TCP", 2379)]
    kubelet_from_cp = [r for r in rules if r.direction == "ingress" and admits(r, "10.0.0.1", "TCP", 10250)]
    assert [r.name for r in apiserver] == ["kube-apiserver"]
    assert [r.name for r in admin] == ["kube-apiserver"]
    assert etcd_from_worker == []
    assert [r.name for r in etcd_from_cp] == ["etcd"]
    assert [r.name for r in kubelet_from_cp] == ["kubelet"]


def test_no_control_plane_means_no_kubernetes_holes():
    names = by_name(rules_from_vars({"netpol_controller_addresses": ["192.0.2.1"]}))
    assert not {"kube-apiserver", "etcd", "kubelet"} & set(names)
    assert {"dns-udp", "dns-tcp", "dhcp-client", "dhcpv6-client"} <= set(names)


def test_dns_goes_to_the_resolvers_only_when_given():
    anywhere = by_name(rules_from_vars({}))["dns-udp"]
    scoped = by_name(rules_from_vars({"netpol_dns_resolvers": ["10.9.9.9"]}))["dns-udp"]
    assert anywhere.cidrs == () and scoped.cidrs == ("10.9.9.9/32",)
    assert not admits(scoped, "10.9.9.8", "UDP", 53) and admits(scoped, "10.9.9.9", "UDP", 53)


def test_user_icmpv6_rule():
    [rule] = rules_from_vars({"netpol_privileged_defaults": False, "netpol_privileged_rules": [
        {"name": "echo", "direction": "ingress", "protocol": "icmpv6", "icmpv6_types": [128]}]})
    assert rule == PrivilegedRule("echo", "ingress", "ICMPV6", None, (), (128,))


def test_user_rule_with_a_default_name_replaces_it_and_others_are_added():
    rules = by_name(rules_from_vars({
        **LAB,
        "netpol_privileged_rules": [
            {"name": "ssh-management", "direction": "ingress", "ports": 2222, "cidrs": ["192.0.2.1"]},
            {"name": "bgp", "direction": "ingress", "protocol": "tcp", "ports": "179-179", "cidrs": "10.0.0.0/8"},
        ],
    }))
    assert rules["ssh-management"].ports == (2222, 2222)
    assert rules["ssh-management"].cidrs == ("192.0.2.1/32",)
    assert rules["bgp"] == PrivilegedRule("bgp", "ingress", "TCP", (179, 179), ("10.0.0.0/8",))


def test_exclude_and_replace_all():
    excluded = by_name(rules_from_vars({**LAB, "netpol_privileged_exclude": ["kubelet", "dhcp-client"]}))
    assert "kubelet" not in excluded and "dhcp-client" not in excluded and "etcd" in excluded
    only_user = rules_from_vars({
        **LAB,
        "netpol_privileged_defaults": False,
        "netpol_privileged_rules": [{"name": "x", "direction": "egress", "protocol": "ALL"}],
    })
    assert only_user == (PrivilegedRule("x", "egress", "ALL"),)


def test_dhcp_can_be_switched_off():
    assert "dhcp-client" not in by_name(rules_from_vars({"netpol_privileged_dhcp": False}))


def test_rules_are_deterministic():
    assert rules_from_vars(LAB) == rules_from_vars(dict(LAB))


@pytest.mark.parametrize("entry, message", [
    ({"direction": "ingress"}, "netpol_privileged_rules[0].name: required"),
    ({"name": "a", "direction": "in"}, "netpol_privileged_rules[0].direction: 'in' is not one of"),
    ({"name": "a", "direction": "ingress", "protocol": "gre"}, "netpol_privileged_rules[0].protocol: 'gre'"),
    ({"name": "a", "direction": "ingress", "ports": 70000}, "netpol_privileged_rules[0].ports: 70000 must"),
    ({"name": "a", "direction": "ingress", "ports": "x"}, "netpol_privileged_rules[0].ports: 'x' is not a port"),
    ({"name": "a", "direction": "ingress", "ports": [9, 3]}, "netpol_privileged_rules[0].ports: [9, 3] must"),
    ({"name": "a", "direction": "ingress", "cidrs": ["10.0.0.0/33"]}, "netpol_privileged_rules[0].cidrs[0]: '10.0.0.0/33'"),
    ({"name": "a", "direction": "ingress", "port": 5}, "netpol_privileged_rules[0].port: unknown field"),
    ({"name": "a", "direction": "ingress", "icmpv6_types": [1]}, "icmpv6_types: only with protocol ICMPV6"),
    ({"name": "a", "direction": "ingress", "protocol": "ALL", "ports": 5}, "ports: not allowed with protocol ALL"),
    ("ssh", "netpol_privileged_rules[0]: must be a mapping"),
])
def test_bad_user_rules_name_variable_index_and_field(entry, message):
    with pytest.raises(PrivilegedError) as e:
        rules_from_vars({"netpol_privileged_rules": [entry]})
    assert message in str(e.value)


def test_all_errors_are_reported_together():
    with pytest.raises(PrivilegedError) as e:
        rules_from_vars({"netpol_privileged_rules": [
            {"name": "a", "direction": "up"}, {"name": "a", "direction": "ingress"}, {"name": "a", "direction": "egress"},
        ]})
    assert len(e.value.errors) == 2
    assert "duplicate name 'a'" in e.value.errors[1]


def test_bad_address_variable_is_named():
    with pytest.raises(PrivilegedError, match=r"netpol_management_cidrs\[0\]: 'ten' is not"):
        rules_from_vars({"netpol_management_cidrs": ["ten"]})


# What ipBlock.cidr rejects (test_validate.test_invalid_cidrs), every address variable rejects too.
AMBIGUOUS = [("10.0.0.0/08", "leading 0s"), ("10.0.0.0/255.0.0.0", "valid CIDR"), ("010.0.0.1", "leading 0s"),
             ("::ffff:10.0.0.1", "IPv4-mapped"), ("::ffff:10.0.0.0/104", "IPv4-mapped"), ("fe80::1%eth0", "valid IP"),
             ("10.1", "valid IP"), (167772161, "must be a string")]
ADDRESS_VARIABLES = ["netpol_controller_addresses", "netpol_management_cidrs", "netpol_admin_cidrs",
                     "netpol_dns_resolvers", "netpol_control_plane_addresses"]


@pytest.mark.parametrize("variable", ADDRESS_VARIABLES)
@pytest.mark.parametrize("value, reason", AMBIGUOUS)
def test_every_address_variable_has_ipblocks_grammar(variable, value, reason):
    with pytest.raises(PrivilegedError) as e:
        rules_from_vars({variable: ["192.0.2.1", value]})
    [error] = e.value.errors
    assert error.startswith("%s[1]: %r is not an IP address or CIDR: " % (variable, value)) and reason in error


@pytest.mark.parametrize("value, reason", AMBIGUOUS)
def test_privileged_rule_cidrs_have_ipblocks_grammar(value, reason):
    with pytest.raises(PrivilegedError, match=r"netpol_privileged_rules\[0\]\.cidrs\[0\]: .*" + reason):
        rules_from_vars({"netpol_privileged_rules": [{"name": "a", "direction": "ingress", "cidrs": [value]}]})


def test_host_bits_are_cleared_with_a_warning_as_the_apiserver_does():
    variables = {"netpol_management_cidrs": ["10.0.0.5/24", "10.1.0.0/16"],
                 "netpol_privileged_rules": [{"name": "a", "direction": "ingress", "cidrs": ["fd00::1/64"]}]}
    rules = {r.name: r for r in rules_from_vars(variables)}
    assert rules["a"].cidrs == ("fd00::/64",)
    assert host_bits_warnings(variables) == [
        "netpol_management_cidrs[0]: CIDR value '10.0.0.5/24' has host bits set; using 10.0.0.0/24 "
        "(every address of it is admitted)",
        "netpol_privileged_rules[0].cidrs[0]: CIDR value 'fd00::1/64' has host bits set; using fd00::/64 "
        "(every address of it is admitted)",
    ]


def test_lockout_warning_when_the_controller_has_no_ssh_path():
    safe = rules_from_vars(LAB)
    assert lockout_warnings(safe, ["192.0.2.1"]) == []
    assert lockout_warnings(safe, ["198.51.100.7"]) == []  # inside a management CIDR
    excluded = rules_from_vars({**LAB, "netpol_privileged_exclude": ["ssh-management"]})
    [warning] = lockout_warnings(excluded, ["192.0.2.1"])
    assert "192.0.2.1" in warning and "TCP 22" in warning
    assert lockout_warnings(safe, ["192.0.2.1"], ssh_port=2222) != []


def test_lockout_warning_when_the_controller_is_unknown():
    [warning] = lockout_warnings(rules_from_vars({}), [])
    assert "netpol_controller_addresses" in warning


def test_an_allow_all_ingress_rule_keeps_the_controller():
    rules = rules_from_vars({"netpol_privileged_rules": [{"name": "all", "direction": "ingress", "protocol": "ALL"}]})
    assert lockout_warnings(rules, ["2001:db8::5"]) == []
