# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Simulate and explain: every semantic item of the GUIDE's section 2, one row each."""

from __future__ import annotations

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.engine.simulate import matrix, verdict

from engine_cases import CASES, OPTIONS, fleet, policies, policy, select


def _endpoint(fleet_, name):
    return next((w for w in fleet_.workloads if w.name == name), name)


@pytest.mark.parametrize("manifests, flow, allowed, reason", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_verdict_and_its_reason(manifests, flow, allowed, reason):
    the_fleet = fleet()
    src, dst, port, protocol, family = flow
    result = verdict(the_fleet, policies(*manifests), _endpoint(the_fleet, src), _endpoint(the_fleet, dst),
                     port, protocol, family, OPTIONS)
    assert result.allowed is allowed
    assert reason in " / ".join(result.reasons)


def test_reasons_name_both_sides():
    the_fleet = fleet()
    drawn = policies(policy("shop", "p", {"podSelector": select("db"), "ingress": [{"ports": [{"port": 5432}]}]}))
    result = verdict(the_fleet, drawn, "10.0.1.1", "10.0.1.2", 5432, "tcp", 4)
    assert result.reasons == ("egress: not isolated for egress", "ingress: allowed by shop/p ingress[0]")
    assert result.ingress.isolated_by == ("shop/p",) and result.ingress.allowed_by == ("shop/p ingress[0]",)


def test_matrix_covers_every_pair_family_and_declared_port():
    records = matrix(fleet(), policies(policy("shop", "deny", {"podSelector": select("db")})))
    keys = {(r["src"], r["dst"], r["address"], r["family"], r["protocol"], r["port"]) for r in records}
    assert ("web", "db", "10.0.1.2", 4, "tcp", 5432) in keys
    assert ("web", "db", "fd00:1::2", 6, "udp", 53) in keys
    assert ("api", "db", "10.0.1.2", 4, "tcp", 80) in keys
    assert not [k for k in keys if k[0] == "api" and k[3] == 6]  # api has no IPv6
    assert not [k for k in keys if k[1] == "mon"]  # mon declares no ports
    assert not [k for k in keys if k[0] == k[1]]
    assert set(records[0]) == {"src", "dst", "address", "family", "protocol", "port", "reachable"}
    reachable = {(r["src"], r["dst"], r["family"], r["port"]): r["reachable"] for r in records}
    assert reachable[("web", "db", 4, 5432)] is False and reachable[("db", "web", 6, 80)] is True


def test_matrix_fills_given_probes_and_places_outside_sources_by_address():
    drawn = policies(policy("shop", "p", {"podSelector": select("db"), "ingress": [
        {"from": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]}]}))
    probes = [{"src": "bastion", "src_address": "192.0.2.5", "dst": "db", "address": "10.0.1.2",
               "family": 4, "protocol": "tcp", "port": 5432},
              {"src": "web", "dst": "db", "address": "10.0.1.2", "family": 4, "protocol": "tcp", "port": 5432}]
    assert [r["reachable"] for r in matrix(fleet(), drawn, probes)] == [True, False]


def test_a_source_known_only_by_name_matches_no_cidr_and_no_selector():
    drawn = policies(policy("shop", "p", {"podSelector": select("db"), "ingress": [
        {"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}, {"ports": [{"port": 80}]}]}))
    probes = [{"src": "elsewhere", "dst": "db", "address": "10.0.1.2", "family": 4, "protocol": "tcp", "port": port}
              for port in (5432, 80)]
    assert [r["reachable"] for r in matrix(fleet(), drawn, probes)] == [False, True]


def test_matrix_for_chosen_hosts_ports_and_protocols():
    drawn = policies(policy("shop", "p", {"podSelector": select("db"), "ingress": [{"ports": [{"port": 22}]}]}))
    records = matrix(fleet(), drawn, hosts=["web", "db"], ports=[("TCP", 22), ("UDP", 22)])
    assert {(r["src"], r["dst"], r["family"], r["protocol"], r["reachable"]) for r in records} == {
        (src, dst, family, protocol, dst == "web" or protocol == "tcp")
        for src, dst in (("web", "db"), ("db", "web")) for family in (4, 6) for protocol in ("tcp", "udp")}


def test_vms_on_one_hypervisor_are_not_node_local_but_the_hypervisor_is():
    from ansible_collections.netpol.fleet.plugins.module_utils.engine.fleet import load_fleet

    def vm(name, number):
        return {"name": name, "namespace": "shop", "labels": {"app": name}, "addresses": ["10.0.1.%d" % number],
                "interface": "vnet%d" % number, "mac": "52:54:00:00:01:%02x" % number}
    the_fleet = load_fleet({"hv1": {"netpol_addresses": ["10.0.0.1"], "netpol_namespace": "infra",
                                    "netpol_workloads": [vm("web", 1), vm("db", 2)]}}, None)
    deny = policies(policy("shop", "deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}))
    web, db = (next(w for w in the_fleet.workloads if w.name == n) for n in ("web", "db"))
    hypervisor = next(w for w in the_fleet.workloads if w.name == "hv1")
    assert not verdict(the_fleet, deny, web, db, 80).allowed
    assert not verdict(the_fleet, deny, web, "10.0.0.1", 80).allowed  # a VM's egress covers its hypervisor
    assert verdict(the_fleet, deny, hypervisor, db, 80).egress.reason == "node-local"
    assert verdict(the_fleet, deny, "10.0.0.1", db, 80).allowed
    records = matrix(the_fleet, deny, [{"src": "hv1", "dst": "x", "address": "10.0.1.2", "family": 4,
                                        "protocol": "tcp", "port": 80}])
    assert records[0]["reachable"]  # the hypervisor by name is its own workload, not one of its VMs
