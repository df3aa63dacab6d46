# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bridge mode compile: the golden text of a hypervisor, and the properties of its layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.bridge.dataplane import (
    BRIDGE_CHAIN, CHECK_CHAIN, EGRESS_CHAIN, INGRESS_CHAIN, INPUT_CHAIN)
from ansible_collections.netpol.fleet.plugins.module_utils.bridge.zones import zones
from ansible_collections.netpol.fleet.plugins.module_utils.ebtables import text as ebtables_text
from ansible_collections.netpol.fleet.plugins.module_utils.engine.compile import compile_fleet
from ansible_collections.netpol.fleet.plugins.module_utils.engine.fleet import load_fleet
from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import CHAIN_NAME_MAX
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import CompileOptions, PrivilegedRule
from ansible_collections.netpol.fleet.plugins.module_utils.engine.parse import load_policies
from ansible_collections.netpol.fleet.plugins.module_utils.ipset import text as ipset_text
from ansible_collections.netpol.fleet.plugins.module_utils.iptables import text as iptables_text

GOLDEN = Path(__file__).parent / "golden"
OPTIONS = CompileOptions(privileged=(PrivilegedRule("dhcp-client", "egress", "UDP", (67, 67)),))


def vm(name, number, interface, labels, ports=()):
    return {"name": name, "namespace": "shop", "labels": labels, "addresses": ["10.0.1.%d" % number, "fd00:1::%d" % number],
            "interface": interface, "mac": "52:54:00:00:01:%02x" % number, "ports": list(ports)}


def hostvars(hv1_vms=None, hv2_vms=None, hv1_host_mode=False):
    hv1 = {"netpol_addresses": ["10.0.0.1"], "netpol_workloads": hv1_vms if hv1_vms is not None else [
        vm("web", 1, "vnet0", {"app": "web"}), vm("db", 2, "vnet1", {"app": "db"}, [{"name": "pg", "port": 5432}])]}
    if hv1_host_mode:
        hv1.update(netpol_namespace="infra", netpol_labels={"role": "hypervisor"})
    inventory = {"hv1": hv1, "hv2": {"netpol_addresses": ["10.0.0.2"], "netpol_workloads": hv2_vms or []}}
    return inventory


PORTS = {"hv1": {"vnet0": "br10", "vnet1": "br10", "vnet2": "br20"}, "hv2": {"vnet0": "br10"}}
DB_FROM_WEB = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "db-from-web", "namespace": "shop"},
               "spec": {"podSelector": {"matchLabels": {"app": "db"}},
                        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": "pg"}]}]}}
WEB_EGRESS = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "web-out", "namespace": "shop"},
              "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
                       "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}}


def compiled(inventory=None, manifests=(DB_FROM_WEB, WEB_EGRESS), hosts=("hv1",), options=OPTIONS):
    policies = load_policies(list(manifests), [], ".")[0]
    return compile_fleet(load_fleet(inventory or hostvars(), None), policies, options, hosts=hosts, port_bridges=PORTS)


def chains_of(state, family="ipv4", table="filter"):
    return {c.name: c.rules for c in state.table(family, table).chains}


def test_golden_hypervisor():
    """The exact text a fresh hypervisor would restore; on mismatch the actual text lands beside the .ref."""
    state = compiled()["hv1"]
    parts = ["# ipset\n" + ipset_text.render_restore(state.sets), "# bridges %s" % " ".join(state.bridges)]
    parts += ["# %s\n%s" % (t.family, (ebtables_text if t.family == "bridge" else iptables_text).render_restore(t))
              for t in state.tables]
    actual = "\n".join(parts)
    reference = GOLDEN / "hypervisor.ref"
    if not reference.exists() or reference.read_text() != actual:
        (GOLDEN / "hypervisor.actual").write_text(actual)
    assert reference.exists(), "no reference yet: review hypervisor.actual and rename it"
    assert reference.read_text() == actual, "differs: diff hypervisor.ref hypervisor.actual"


def test_a_bridged_packet_meets_source_egress_then_destination_ingress_then_accept():
    chains = chains_of(compiled()["hv1"])
    check = chains[CHECK_CHAIN]
    assert check[0] == ("-m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "
                        "\"netpol bridge: the checks of bridged packets of managed VMs\" -j ACCEPT")
    assert check.index("-m conntrack --ctstate INVALID -j DROP") < check.index("-j %s" % EGRESS_CHAIN)
    assert check.index("-j %s" % EGRESS_CHAIN) < check.index("-j %s" % INGRESS_CHAIN) < len(check) - 1
    assert check[-1].endswith("-j ACCEPT")
    egress, ingress = chains[EGRESS_CHAIN], chains[INGRESS_CHAIN]
    assert [r.split(" -j ")[0] for r in egress if "physdev" in r] == [
        '-m physdev --physdev-in vnet0 -m comment --comment "egress of VM shop/web"']  # web only
    assert [r.split(" -j ")[0] for r in ingress if "physdev" in r] == [
        '-m physdev --physdev-out vnet1 -m comment --comment "ingress of VM shop/db"']  # db only
    assert any("privileged dhcp-client" in r for r in egress) and not any("privileged" in r for r in ingress)
    assert chains[BRIDGE_CHAIN] == tuple('-m physdev %s %s -m comment --comment "%s VM shop/%s" -j %s' % (
        flag, port, way, vm, CHECK_CHAIN) for port, vm in (("vnet0", "web"), ("vnet1", "db"))
        for flag, way in (("--physdev-in", "from"), ("--physdev-out", "to")))


def test_the_hypervisors_own_addresses_reach_its_vms_also_when_routed_back_through_forward():
    state = compiled()["hv1"]
    rule = chains_of(state)[INGRESS_CHAIN][0]
    node_set = next(s for s in state.sets if s.name in rule)
    assert "node to its own VMs" in rule and [m.entry for m in node_set.members] == ["10.0.0.1"]


def test_vm_to_hypervisor_is_the_vms_egress_in_input_and_returns():
    state = compiled()["hv1"]
    chains = chains_of(state)
    web_egress = next(r.split("-j ")[-1] for r in chains[EGRESS_CHAIN] if "vnet0" in r)
    assert chains[INPUT_CHAIN][0].startswith("-m conntrack --ctstate RELATED,ESTABLISHED -m comment")
    assert ('-m physdev --physdev-in vnet0 -m comment --comment "egress of VM shop/web to the hypervisor" -j %s'
            % web_egress) in chains[INPUT_CHAIN]
    assert not any(r.endswith("ACCEPT") for r in chains[INPUT_CHAIN])
    jumps = {(j.chain, j.target): j for j in state.table("ipv4").jumps}
    assert jumps[("INPUT", INPUT_CHAIN)].match == "-m physdev --physdev-is-in"
    assert jumps[("FORWARD", BRIDGE_CHAIN)].match == "-m physdev --physdev-is-bridged"


def test_the_vm_chains_are_host_modes_and_sets_are_shared():
    """The same workload chain name and rules as host mode: a VM migrating keeps its names."""
    state = compiled()["hv1"]
    moved = compiled(hostvars(hv1_vms=[vm("web", 1, "vnet0", {"app": "web"})],
                              hv2_vms=[vm("db", 2, "vnet0", {"app": "db"}, [{"name": "pg", "port": 5432}])]),
                     hosts=("hv1", "hv2"))
    db_chain = next(r.split("-j ")[-1] for r in chains_of(state)[INGRESS_CHAIN] if "vnet1" in r)
    assert chains_of(moved["hv2"])[db_chain] == chains_of(state)[db_chain]
    assert db_chain not in chains_of(moved["hv1"])
    used = {word for r in chains_of(state)[db_chain] for word in r.split() if word.startswith("netpol4-")}
    assert used and used <= {s.name for s in moved["hv2"].sets} & {s.name for s in state.sets}


def test_one_zone_per_bridge_deterministic_and_distinct():
    first = zones(["br10", "br20", "br10"])
    assert sorted(first) == ["br10", "br20"] and len(set(first.values())) == 2
    assert zones(["br20", "br10"]) == first and zones(["br10"])["br10"] == first["br10"]
    assert all(0 < z < 0xFFFF for z in first.values())
    three = compiled(hostvars(hv1_vms=[vm("web", 1, "vnet0", {"app": "web"}), vm("db", 2, "vnet2", {"app": "db"})]))
    rules = chains_of(three["hv1"], "ipv6", "raw")["NETPOL-BR-ZONES"]
    assert [r.split()[1] for r in rules] == ["br10", "br20"] and three["hv1"].bridges == ("br10", "br20")


def test_managed_ports_skip_the_hosts_nat_in_both_families():
    state = compiled()["hv1"]
    for family in ("ipv4", "ipv6"):
        nat = state.table(family, "nat")
        assert [j.chain for j in nat.jumps] == ["PREROUTING"]
        assert [r.split(" -m comment")[0] for r in nat.chains[0].rules] == [
            "-m physdev --physdev-in vnet0", "-m physdev --physdev-in vnet1"]


def test_a_hypervisor_that_is_a_workload_too_keeps_its_host_mode_chains_and_reaches_its_vms():
    state = compiled(hostvars(hv1_host_mode=True), manifests=(DB_FROM_WEB, WEB_EGRESS, {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "lock", "namespace": "infra"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}))["hv1"]
    chains = chains_of(state)
    assert chains["NETPOL-INGRESS"][-1].startswith("-j NETPOL-I-")  # the host's own chain, unconditionally
    node_rule = [r for r in chains["NETPOL-EGRESS"] if "node to its own VMs" in r]
    assert node_rule and chains["NETPOL-EGRESS"].index(node_rule[0]) < len(chains["NETPOL-EGRESS"]) - 1
    vm_set = next(s for s in state.sets if s.name in node_rule[0])
    assert [m.entry for m in vm_set.members] == ["10.0.1.1", "10.0.1.2"]


def test_host_mode_output_is_untouched_by_bridge_mode():
    """A host with no VMs compiles exactly as before: two filter tables, no bridges."""
    state = compiled(hosts=("hv2",))["hv2"]
    assert [(t.family, t.name) for t in state.tables] == [("ipv4", "filter"), ("ipv6", "filter")]
    assert state.bridges == () and not any("physdev" in r for t in state.tables for c in t.chains for r in c.rules)


def test_every_bridge_rule_that_concerns_one_vm_names_it_in_a_comment():
    """iptables -S and the diff show whose rule it is (host mode comments its chains the same way)."""
    state = compiled()["hv1"]
    for family in ("ipv4", "ipv6"):
        for name, rules in chains_of(state, family).items():
            for rule in rules:
                if "--physdev-in vnet" in rule or "--physdev-out vnet" in rule:
                    assert "VM shop/web" in rule or "VM shop/db" in rule, (name, rule)
        assert "netpol bridge:" in chains_of(state, family)[CHECK_CHAIN][0]
        assert "netpol bridge:" in chains_of(state, family)[INPUT_CHAIN][0]


def test_names_fit_the_kernel():
    state = compiled()["hv1"]
    assert all(len(c.name) <= CHAIN_NAME_MAX for t in state.tables for c in t.chains)


def test_a_vm_whose_bridge_is_unknown_is_refused():
    policies = load_policies([DB_FROM_WEB], [], ".")[0]
    with pytest.raises(ValueError, match="host hv1: no bridge known for the port of shop/db \\(vnet1\\)"):
        compile_fleet(load_fleet(hostvars(), None), policies, OPTIONS, hosts=["hv1"], port_bridges={"hv1": {"vnet0": "br10"}})


def test_ports_not_in_netpol_workloads_drop_before_any_vm_check_when_asked():
    """netpol_bridge_drop_unmanaged: a packet of a managed bridge must enter (and in FORWARD leave) by a
    VM's port or an uplink; checked before the managed dispatch, and in INPUT after replies and ND."""
    policies = load_policies([DB_FROM_WEB, WEB_EGRESS], [], ".")[0]
    options = CompileOptions(privileged=OPTIONS.privileged, bridge_drop_unmanaged=True)
    state = compile_fleet(load_fleet(hostvars(), None), policies, options, hosts=("hv1",), port_bridges=PORTS,
                          bridge_uplinks={"hv1": {"br10": ("bond0",)}})["hv1"]
    for family in ("ipv4", "ipv6"):
        chains = chains_of(state, family)
        assert [r.split(" -j ")[1] for r in chains[BRIDGE_CHAIN][:2]] == ["NETPOL-BR-FROM", "NETPOL-BR-TO"]
        assert all(r.startswith("-i br10 ") for r in chains[BRIDGE_CHAIN][:2])
        assert [r.split(" -m comment")[0] for r in chains["NETPOL-BR-FROM"][:-1]] == [
            "-m physdev --physdev-in %s" % p for p in ("bond0", "vnet0", "vnet1")]
        assert chains["NETPOL-BR-TO"][-1].endswith("-j DROP") and "--physdev-out bond0" in chains["NETPOL-BR-TO"][0]
        first_own = next(r for r in chains[INPUT_CHAIN] if "RELATED,ESTABLISHED" not in r and "icmp6" not in r)
        assert first_own.startswith("-i br10 ") and first_own.endswith("-j NETPOL-BR-FROM")
    assert "NETPOL-BR-FROM" not in chains_of(compiled()["hv1"])  # off by default: no rule at all
