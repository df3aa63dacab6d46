# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

from ansible_collections.netpol.fleet.plugins.module_utils.engine.compile import compile_fleet
from ansible_collections.netpol.fleet.plugins.module_utils.engine.fleet import load_fleet
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import CompileOptions, PrivilegedRule
from ansible_collections.netpol.fleet.plugins.module_utils.engine.parse import load_policies
from ansible_collections.netpol.fleet.plugins.module_utils.engine.tightening import Flow, denied_flows

HOSTS = {
    "db": {"netpol_namespace": "shop", "netpol_labels": {"app": "db"}, "netpol_addresses": ["10.0.0.2", "fd00::2"]},
    "web": {"netpol_namespace": "shop", "netpol_labels": {"app": "web"}, "netpol_addresses": ["10.0.0.1", "fd00::1"]},
}
DB_FROM_WEB = {
    "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "db", "namespace": "shop"},
    "spec": {"podSelector": {"matchLabels": {"app": "db"}},
             "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 5432}]}]},
}
DB_LOCAL = ("10.0.0.2", "fd00::2", "127.0.0.1", "::1")
SSH = PrivilegedRule("ssh-management", "ingress", "TCP", (22, 22), ("192.0.2.1/32",))


def db_state(*manifests):
    policies = load_policies(list(manifests), [], ".")[0]
    return compile_fleet(load_fleet(HOSTS, {}), policies, CompileOptions(privileged=(SSH,)), hosts=["db"])["db"]


def cut(state, *flows):
    return [str(d.flow) for d in denied_flows(state, flows, DB_LOCAL)]


def test_only_the_connections_the_policy_denies_are_cut():
    allowed = Flow(4, "TCP", "10.0.0.1", "10.0.0.2", 40000, 5432)
    wrong_port = Flow(4, "TCP", "10.0.0.1", "10.0.0.2", 40001, 6379)
    stranger = Flow(6, "TCP", "fd00::9", "fd00::2", 40002, 5432, zone=3)
    assert cut(db_state(DB_FROM_WEB), allowed, wrong_port, stranger) == [
        "tcp 10.0.0.1:40001 -> 10.0.0.2:6379 zone 0", "tcp [fd00::9]:40002 -> [fd00::2]:5432 zone 3"]


def test_the_denying_rule_and_direction_are_named():
    [denied] = denied_flows(db_state(DB_FROM_WEB), [Flow(4, "UDP", "10.0.0.9", "10.0.0.2", 5353, 53)], DB_LOCAL)
    assert denied.direction == "ingress" and denied.chain.startswith("NETPOL-I-")
    assert denied.rule.endswith("-j DROP")


def test_nothing_is_cut_without_a_policy_or_for_privileged_paths():
    ssh = Flow(4, "TCP", "192.0.2.1", "10.0.0.2", 50000, 22)
    assert cut(db_state(), Flow(4, "TCP", "10.0.0.9", "10.0.0.2", 1, 6379)) == []
    assert cut(db_state(DB_FROM_WEB), ssh) == []


def test_egress_is_judged_from_the_source_and_foreign_or_local_flows_are_left_alone():
    egress_deny = dict(DB_FROM_WEB, spec={"podSelector": {}, "policyTypes": ["Egress"]})
    outbound = Flow(4, "TCP", "10.0.0.2", "10.0.0.1", 40000, 80)
    forwarded = Flow(4, "TCP", "10.9.0.1", "10.9.0.2", 40000, 80)
    node_local = Flow(4, "TCP", "10.0.0.2", "127.0.0.1", 40000, 80)
    assert cut(db_state(egress_deny), outbound, forwarded, node_local) == ["tcp 10.0.0.2:40000 -> 10.0.0.1:80 zone 0"]
