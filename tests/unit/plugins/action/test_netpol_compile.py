# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Dict, List
from unittest.mock import MagicMock

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.bridge import zones
from ansible_collections.netpol.fleet.plugins.action import netpol_compile
from ansible_collections.netpol.fleet.plugins.action.netpol_compile import (
    ActionModule,
    policy_base_dir,
    ssh_client_address,
    with_base_tables,
)
from ansible_collections.netpol.fleet.plugins.module_utils.ipset.sets import sets_from_text

INVENTORY = {
    "web": {"netpol_namespace": "shop", "netpol_labels": {"app": "web"},
            "netpol_addresses": ["10.0.0.1/24", "fd00::1/64"], "netpol_ports": [{"name": "http", "port": 80}]},
    "db": {"netpol_namespace": "shop", "netpol_labels": {"app": "db"},
           "netpol_addresses": ["10.0.0.2", "fd00::2"], "netpol_ports": [{"name": "pg", "port": 5432}]},
    "cp": {"netpol_namespace": "kube-system", "netpol_addresses": ["10.0.0.9"],
           "netpol_ports": [{"name": "https", "port": 6443}]},
    "bastion": {"netpol_addresses": ["10.0.0.200"], "ansible_env": {"SSH_CLIENT": "10.0.0.250 5000 22"},
                "unrelated": "{{ never templated }}"},
}
DB_FROM_WEB = {
    "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
    "metadata": {"name": "db-from-web", "namespace": "shop"},
    "spec": {"podSelector": {"matchLabels": {"app": "db"}},
             "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": "pg"}]}]},
}


# host -> what its bridge query reported, as the role's one query task returns it (hypervisor() below).
QUERIED: Dict[str, Dict[str, Any]] = {}


def query_results(queried: Dict[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The registered results of the role's query loop: one per host, naming it in item.host."""
    return [dict(facts, changed=False, item={"host": host, "ports": [], "fdb": False}) for host, facts in queried.items()]


def run(args: Dict[str, Any], transport: str = "netpol.fleet.netns", batch=("db",), **more_vars: Any):
    if QUERIED and "bridge_facts" not in args:
        args = dict(args, bridge_facts=query_results(QUERIED))
    task = MagicMock(async_val=0, check_mode=False, args=args)
    connection = MagicMock(transport=transport)
    connection._shell.tmpdir = None
    action = ActionModule(task, connection, MagicMock(check_mode=False), loader=None, templar=None,
                          shared_loader_obj=None)
    action._display = MagicMock()
    action._low_level_execute_command = MagicMock(return_value={"stdout": ""})
    task_vars = {"hostvars": INVENTORY, "ansible_play_batch": list(batch), "playbook_dir": "/nowhere",
                 "groups": {"all": list(INVENTORY), "control_plane": ["cp"]}, **more_vars}
    result = action.run(task_vars=task_vars)
    warnings = [c.args[0] for c in action._display.warning.call_args_list]
    return result, warnings


def rules_of(state: Dict[str, Any], family: str = "ipv4") -> List[str]:
    table = next(t for t in state["tables"] if t["family"] == family)
    return [r for chain in table["chains"] for r in chain["rules"]]


def stored_sets(result: Dict[str, Any], host: str) -> List[Any]:
    """The host's sets as netpol_host's action reads them: from the store, by digest."""
    store = Path(result["set_store"])
    return [s for digest in result["hosts"][host]["sets"].values()
            for s in sets_from_text((store / (digest + ".ipset")).read_text())]


def test_only_the_batch_is_returned_but_peers_come_from_the_whole_inventory(tmp_path):
    result = run({"policies": [DB_FROM_WEB], "set_store": str(tmp_path)})[0]
    assert not result.get("failed"), result
    assert list(result["hosts"]) == ["db"]
    members = [entry.split()[0] for s in stored_sets(result, "db") for entry in s.entries]  # entry [comment ...]
    assert "10.0.0.1" in members and "fd00::1" in members  # web is outside the batch
    assert result["summary"]["db"]["sets"] == len(result["hosts"]["db"]["sets"])


def test_a_host_result_names_its_sets_and_each_set_is_stored_once_by_its_content(tmp_path):
    everyone = {"policies": [dict(DB_FROM_WEB, spec=dict(DB_FROM_WEB["spec"], podSelector={}))],
                "set_store": str(tmp_path)}
    result = run(everyone, batch=("db", "web"))[0]
    db, web = result["hosts"]["db"]["sets"], result["hosts"]["web"]["sets"]
    assert db and db == web  # the same selector: the same sets, by name and content digest
    assert all(isinstance(digest, str) for digest in db.values())  # names and digests, no members
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted(d + ".ipset" for d in db.values())  # one file per distinct set
    for name, digest in db.items():
        text = (tmp_path / (digest + ".ipset")).read_text()
        assert hashlib.sha256(text.encode()).hexdigest()[:32] == digest
        assert [s.name for s in sets_from_text(text)] == [name]
    again = run(everyone, batch=("db", "web"))[0]
    assert again["hosts"]["db"]["sets"] == db  # same input, same names and digests


def test_every_input_error_is_reported_at_once_and_names_its_place():
    bad_policy = dict(DB_FROM_WEB, spec=dict(DB_FROM_WEB["spec"], ingress=[{"ports": [{"port": 70000}]}]))
    result = run({"policies": [bad_policy], "namespaces": {"Bad_Name": {}},
                  "privileged_rules": [{"name": "x", "direction": "sideways"}]})[0]
    assert result["failed"] and "no host was changed" in result["msg"]
    text = "\n".join(result["errors"])
    assert "shop/db-from-web" in text and "70000" in text
    assert "Bad_Name" in text
    assert "netpol_privileged_rules[0].direction" in text


def test_bad_privileged_rule_is_named():
    result = run({"policies": [DB_FROM_WEB], "privileged_rules": [{"name": "x", "direction": "sideways"}]})[0]
    assert result["failed"]
    assert result["errors"] == ["netpol_privileged_rules[0].direction: 'sideways' is not one of ingress, egress"]


def test_privileged_rules_come_first_with_the_control_plane_from_its_group():
    result = run({"policies": [DB_FROM_WEB], "management_cidrs": ["10.0.0.240/28"]})[0]
    names = [r["name"] for r in result["privileged"]]
    assert names[:2] == ["ssh-management", "kube-apiserver"]
    rules = rules_of(result["hosts"]["db"])
    ssh = next(i for i, r in enumerate(rules) if "privileged ssh-management" in r)
    policy = next(i for i, r in enumerate(rules) if "shop/db-from-web" in r)
    assert ssh < policy
    assert any("-s 10.0.0.9/32" in r and "--dport 2379:2380" in r for r in rules)  # etcd from cp only


def test_controller_detected_from_ssh_client_and_kept():
    result, warnings = run({"policies": [DB_FROM_WEB]}, transport="ssh")
    assert result["controller_addresses"] == ["10.0.0.250"]
    assert any("-s 10.0.0.250/32" in r and "--dport 22" in r for r in rules_of(result["hosts"]["db"]))
    assert not [w for w in warnings if "controller" in w]


def test_lockout_warning_over_ssh_when_nothing_keeps_the_controller():
    warnings = run({"policies": [DB_FROM_WEB], "privileged_exclude": ["ssh-management"]}, transport="ssh")[1]
    assert any("10.0.0.250" in w and "TCP 22" in w for w in warnings)


def test_no_lockout_warning_for_hosts_reached_without_the_network():
    warnings = run({"policies": [DB_FROM_WEB], "privileged_exclude": ["ssh-management"]})[1]
    assert not [w for w in warnings if "controller" in w]


def test_logging_adds_rate_limited_nflog():
    result = run({"policies": [DB_FROM_WEB], "log": {"group": 7, "limit": "20/min", "burst": 5}})[0]
    assert any("--limit 20/min" in r and "--nflog-group 7" in r for r in rules_of(result["hosts"]["db"]))


def test_expected_matrix_covers_the_probed_flows():
    result = run({"policies": [DB_FROM_WEB], "expected": True}, batch=("web", "db"))[0]
    flows = {(f["src"], f["address"], f["port"]): f["reachable"] for f in result["expected"]}
    assert flows[("web", "10.0.0.2", 5432)] is True
    assert flows[("web", "fd00::2", 5432)] is True
    assert flows[("db", "10.0.0.1", 80)] is True  # web is not isolated
    why = next(f["why"] for f in result["expected"] if (f["src"], f["address"], f["port"]) == ("web", "10.0.0.2", 5432))
    assert why == ["egress  at web (shop/web): allowed, not isolated for egress",
                   "ingress at db (shop/db): allowed, allowed by shop/db-from-web ingress[0]"]


def test_explain_answers_one_flow_per_family_from_the_same_inputs():
    result = run({"policies": [DB_FROM_WEB], "explain": {"src": "web", "dst": "db", "port": "5432"}})[0]
    assert [(r["family"], r["reachable"], r["ingress"]["decided_by"]) for r in result["explained"]] == [
        (4, True, ["shop/db-from-web ingress[0]"]), (6, True, ["shop/db-from-web ingress[0]"])]
    denied = run({"policies": [DB_FROM_WEB], "explain": {"src": "bastion", "dst": "db", "port": 5432}})[0]
    assert denied["explained"][0]["ingress"]["reason"].startswith("isolated for ingress by shop/db-from-web")


def test_explain_of_an_unknown_endpoint_fails_naming_it():
    result = run({"policies": [DB_FROM_WEB], "explain": {"src": "nobody", "dst": "db", "port": 5432}})[0]
    assert result["failed"] and "explain: src='nobody' is no workload" in result["msg"]


def test_ssh_client_address():
    assert ssh_client_address("192.0.2.1 51234 22") == "192.0.2.1"
    assert ssh_client_address("fe80::1%eth0 1 22") == "fe80::1"
    assert ssh_client_address("") == "" and ssh_client_address("garbage") == ""


def test_an_ipv4_client_seen_by_a_dual_stack_sshd_is_kept_as_ipv4():
    # The packets are IPv4 ones: an ::ffff: address in an ip6tables rule would admit nothing.
    assert ssh_client_address("::ffff:192.0.2.1 51234 22") == "192.0.2.1"


def test_address_options_are_read_by_ipblocks_grammar_and_named_by_their_variable():
    result = run({"policies": [DB_FROM_WEB], "management_cidrs": ["10.0.0.0/255.0.0.0"], "admin_cidrs": ["10.0.0.0/08"],
                  "dns_resolvers": ["::ffff:10.0.0.53"], "controller_addresses": ["010.0.0.1"]})[0]
    assert result["failed"] and [e.split(":")[0] for e in result["errors"]] == [
        "netpol_controller_addresses[0]", "netpol_management_cidrs[0]", "netpol_admin_cidrs[0]",
        "netpol_dns_resolvers[0]"]


def test_host_bits_in_an_address_option_warn():
    warnings = run({"policies": [DB_FROM_WEB], "management_cidrs": ["10.0.0.250/24"]})[1]
    assert "netpol_management_cidrs[0]: CIDR value '10.0.0.250/24' has host bits set; using 10.0.0.0/24" in \
        "\n".join(warnings)


def test_base_tables_are_always_present():
    state = with_base_tables({"host": "h", "sets": [], "tables": [
        {"family": "ipv6", "name": "filter", "chains": [{"name": "NETPOL-X", "rules": []}], "jumps": []}]})
    assert [(t["family"], t["name"], len(t["chains"])) for t in state["tables"]] == [
        ("ipv6", "filter", 1), ("ipv4", "filter", 0)]


def test_only_netpol_and_address_variables_are_read():
    plain = netpol_compile.fleet_vars(dict(INVENTORY, web=dict(INVENTORY["web"], netpol_policies=["{{ x }}"])))
    assert "unrelated" not in plain["bastion"] and "netpol_policies" not in plain["web"]
    assert plain["bastion"]["ansible_env"] == {"SSH_CLIENT": "10.0.0.250 5000 22"}


@pytest.mark.parametrize("transport", ["ssh", "netpol.fleet.netns"])
def test_nothing_is_executed_on_hosts_when_the_controller_is_known(transport):
    task = {"policies": [DB_FROM_WEB], "controller_addresses": ["10.0.0.250"]}
    result = run(task, transport=transport)[0]
    assert result["controller_addresses"] == ["10.0.0.250"]


VM1 = {"name": "vm1", "namespace": "shop", "labels": {"app": "db"}, "addresses": ["10.0.1.5"], "interface": "vnet0",
       "mac": "52:54:00:00:00:01"}
VM2 = {"name": "vm2", "namespace": "shop", "labels": {"app": "web"}, "addresses": ["10.0.1.6"], "interface": "vnet1",
       "mac": "52:54:00:00:00:02"}
READ = {"ports": {"vnet0": "br10", "vnet1": "br10"}, "missing": [], "br_netfilter": True}


def hypervisor(monkeypatch, facts="read", vms=(VM1, VM2), **more):
    """hv1 with these VMs and what the bridge query reported ("read": READ; None: no query ran)."""
    facts = READ if facts == "read" else facts
    host_vars = {"netpol_addresses": ["10.0.0.50"], "netpol_workloads": list(vms), **more}
    if facts is not None:
        monkeypatch.setitem(QUERIED, "hv1", facts)
    monkeypatch.setitem(INVENTORY, "hv1", host_vars)


def test_a_hypervisor_gets_bridge_chains_zones_no_nat_and_its_bridges(monkeypatch):
    hypervisor(monkeypatch)
    result = run({"policies": [DB_FROM_WEB]}, batch=("hv1",))[0]
    assert not result.get("failed"), result
    state = result["hosts"]["hv1"]
    assert state["bridges"] == ["br10"]
    tables = {(t["family"], t["name"]): t for t in state["tables"]}
    assert sorted(tables) == [("bridge", "nat"), ("ipv4", "filter"), ("ipv4", "nat"), ("ipv4", "raw"),
                              ("ipv6", "filter"), ("ipv6", "nat"), ("ipv6", "raw")]
    jumps = [(j["chain"], j["target"], j["match"]) for j in tables[("ipv4", "filter")]["jumps"]]
    assert ("FORWARD", "NETPOL-BRIDGE", "-m physdev --physdev-is-bridged") in jumps
    rules = rules_of(state)
    assert any(r.startswith("-m physdev --physdev-out vnet0 -m comment --comment \"ingress of VM shop/vm1\" -j NETPOL-I-")
               for r in rules)  # vm1 is isolated
    assert not any("--physdev-out vnet1 " in r and "-j NETPOL-I-" in r for r in rules)  # vm2 is not
    assert [c["rules"] for c in tables[("ipv4", "raw")]["chains"]][0][0].startswith("-i br10 ")
    # The anti-spoofing of both ports (antispoof: full, the default), entered first from nat PREROUTING.
    layer2 = tables[("bridge", "nat")]
    assert [(j["chain"], j["target"]) for j in layer2["jumps"]] == [("PREROUTING", "NETPOL-L2")]
    dispatch = next(c for c in layer2["chains"] if c["name"] == "NETPOL-L2")["rules"]
    assert [r.split(" -j ")[0] for r in dispatch] == ["-i vnet0", "-i vnet1"]


def test_ports_with_antispoof_off_get_no_bridge_table_and_the_others_keep_theirs(monkeypatch):
    hypervisor(monkeypatch, vms=(dict(VM1, antispoof="off"), dict(VM2, antispoof="mac_only")))
    state = run({"policies": [DB_FROM_WEB]}, batch=("hv1",))[0]["hosts"]["hv1"]
    layer2 = next(t for t in state["tables"] if t["family"] == "bridge")
    dispatch = next(c for c in layer2["chains"] if c["name"] == "NETPOL-L2")["rules"]
    assert [r.split(" -j ")[0] for r in dispatch] == ["-i vnet1"]
    hypervisor(monkeypatch, vms=(dict(VM1, antispoof="off"),))
    state = run({"policies": [DB_FROM_WEB]}, batch=("hv1",))[0]["hosts"]["hv1"]
    assert not [t for t in state["tables"] if t["family"] == "bridge"]


def test_a_host_that_declares_no_vms_any_more_still_gets_its_bridge_tables_cleaned(monkeypatch):
    hypervisor(monkeypatch, vms=())
    state = run({"policies": [DB_FROM_WEB]}, batch=("hv1",))[0]["hosts"]["hv1"]
    assert state["bridges"] == [] and len(state["tables"]) == 6
    assert all(not t["chains"] for t in state["tables"] if t["name"] != "filter")


@pytest.mark.parametrize("facts, vms, error", [
    (None, (VM1,), "inventory host hv1: netpol_workloads: the host's bridge ports were not read"),
    (dict(READ, br_netfilter=False), (VM1,), "inventory host hv1: netpol_workloads: br_netfilter is not loaded"),
    (dict(READ, ports={}, missing=["vnet0"]), (VM1,),
     "inventory host hv1: netpol_workloads[0].interface: port vnet0 of VM shop/vm1 does not exist on the host"),
    (dict(READ, ports={"vnet0": None}), (VM1,),
     "inventory host hv1: netpol_workloads[0].interface: vnet0 of VM shop/vm1 is not a port of any bridge"),
    (dict(READ, vlan_aware=["br10"]), (VM1,),
     "inventory host hv1: netpol_workloads[0].interface: port vnet0 of VM shop/vm1 on the VLAN-aware bridge br10 "
     "(vlan_filtering 1) carries VLANs not read: a VM port there must be an access port"),
    (dict(READ, vlan_aware=["br10"], vlans={"vnet0": {"pvid": 10, "untagged": [10], "tagged": [20]}}), (VM1,),
     "inventory host hv1: netpol_workloads[0].interface: port vnet0 of VM shop/vm1 on the VLAN-aware bridge br10 "
     "(vlan_filtering 1) carries PVID 10, untagged 10, tagged 20: a VM port there must be an access port (exactly "
     "one VLAN, its PVID, egress untagged); a VM choosing its VLANs by tagging is not supported"),
    (dict(READ, vlan_aware=["br10"], vlans={"vnet0": {"pvid": None, "untagged": [], "tagged": [10, 20]}}), (VM1,),
     "inventory host hv1: netpol_workloads[0].interface: port vnet0 of VM shop/vm1 on the VLAN-aware bridge br10 "
     "(vlan_filtering 1) carries PVID none, tagged 10, 20: a VM port there must be an access port"),
    (dict(READ, vlan_aware=["br10"], vlans={"vnet0": {"pvid": 10, "untagged": [10, 20], "tagged": []}}), (VM1,),
     "inventory host hv1: netpol_workloads[0].interface: port vnet0 of VM shop/vm1 on the VLAN-aware bridge br10 "
     "(vlan_filtering 1) carries PVID 10, untagged 10, 20: a VM port there must be an access port"),
    (READ, (VM1, dict(VM2, mac=VM1["mac"])),
     "inventory host hv1: netpol_workloads[1].mac: MAC 52:54:00:00:00:01 is also the MAC of shop/vm1"),
    (READ, (VM1, dict(VM2, interface="vnet0")),
     "inventory host hv1: netpol_workloads[1].interface: port vnet0 is also the port of shop/vm1"),
])
def test_bad_bridge_input_stops_the_run_naming_host_and_field(monkeypatch, facts, vms, error):
    hypervisor(monkeypatch, facts, vms)
    result = run({"policies": [DB_FROM_WEB]}, batch=("hv1", "db"))[0]
    assert result["failed"] and "no host was changed" in result["msg"]
    assert any(e.startswith(error) for e in result["errors"]), result["errors"]


VLAN_READ = dict(READ, vlan_aware=["br10"], vlans={
    "vnet0": {"bridge": "br10", "pvid": 10, "untagged": [10], "tagged": []},
    "vnet1": {"bridge": "br10", "pvid": 20, "untagged": [20], "tagged": []},
    "trunk": {"bridge": "br10", "pvid": None, "untagged": [], "tagged": [10, 20, 30]}})


def test_vm_access_ports_on_a_vlan_aware_bridge_get_a_zone_per_vlan_and_the_trunk_its_marks(monkeypatch):
    hypervisor(monkeypatch, VLAN_READ)
    result = run({"policies": [DB_FROM_WEB]}, batch=("hv1",))[0]
    assert not result.get("failed"), result
    state = result["hosts"]["hv1"]
    raw = next(t for t in state["tables"] if t["family"] == "ipv6" and t["name"] == "raw")
    zoned = [r for c in raw["chains"] for r in c["rules"]]
    mark = zones.marks(["br10 vlan 10", "br10 vlan 20"])
    assert [r.split(" -m comment")[0] for r in zoned] == [
        "-i br10 -m mark --mark 0x%x/0xff -m addrtype ! --dst-type LOCAL" % mark[k] for k in ("br10 vlan 10", "br10 vlan 20")] + [
        "-m physdev --physdev-in %s -m addrtype ! --dst-type LOCAL" % p for p in ("vnet0", "vnet1")] + [
        "-i br10 -m mark ! --mark 0x0/0xff"]
    layer2 = next(t for t in state["tables"] if t["family"] == "bridge")
    marking = next(c for c in layer2["chains"] if c["name"] == "NETPOL-VLAN-MARK")["rules"]
    assert [r.split(" -j ")[0] for r in marking] == [
        "-p 802_1Q -i trunk --vlan-id %d --vlan-encap %s" % (v, e) for v in (10, 20) for e in ("0800", "86DD")] + ["-j RETURN"]
    assert state["bridges"] == ["br10"]


UPLINK_READ = dict(READ, ports={"vnet0": "br10", "vnet1": "br10", "eth1": "br10", "eth2": None, "eth3": "br20"})


def test_unmanaged_ports_are_left_alone_by_default_and_dropped_when_asked(monkeypatch):
    hypervisor(monkeypatch, UPLINK_READ, netpol_bridge_uplinks={"br10": ["eth1"]})
    default = rules_of(run({"policies": [DB_FROM_WEB]}, batch=("hv1",))[0]["hosts"]["hv1"])
    assert not any("NETPOL-BR-FROM" in r or "netpol_workloads nor an uplink" in r for r in default)
    result = run({"policies": [DB_FROM_WEB], "bridge_drop_unmanaged": True}, batch=("hv1",))[0]
    assert not result.get("failed"), result
    rules = rules_of(result["hosts"]["hv1"])
    assert [r for r in rules if "--physdev-in" in r and r.endswith("-j RETURN")] == [
        '-m physdev --physdev-in %s -m comment --comment "%s" -j RETURN' % known
        for known in (("eth1", "uplink of br10"), ("vnet0", "VM shop/vm1"), ("vnet1", "VM shop/vm2"))]
    assert [r for r in rules if r.startswith("-i br10 ")] == [
        '-i br10 -m comment --comment "ports of br10 not in netpol_workloads drop" -j NETPOL-BR-%s' % c
        for c in ("FROM", "TO", "FROM")]  # FORWARD both ways, INPUT from


@pytest.mark.parametrize("uplinks, drop, error", [
    ({"br20": ["eth3"]}, False, "inventory host hv1: netpol_bridge_uplinks.br20: br20 carries no VM of netpol_workloads "
                                "on this host (its bridges with VMs: br10)"),
    ({"br10": ["eth9"]}, False, "inventory host hv1: netpol_bridge_uplinks.br10[0]: port eth9 does not exist on the host"),
    ({"br10": ["eth1", "eth2"]}, False, "inventory host hv1: netpol_bridge_uplinks.br10[1]: eth2 is not a port of br10 "
                                        "(it is on no bridge)"),
    ({"br10": ["vnet1"]}, False, "inventory host hv1: netpol_bridge_uplinks.br10[0]: vnet1 is a VM's port"),
    (["eth1"], False, "inventory host hv1: netpol_bridge_uplinks: must map each bridge to the list of its uplink ports"),
    ({}, True, "inventory host hv1: netpol_bridge_uplinks: bridge br10 carries VMs of netpol_workloads but is not "
               "listed: with netpol_bridge_drop_unmanaged every port of it that is not a VM's is dropped"),
    (None, True, "inventory host hv1: netpol_bridge_uplinks: bridge br10 carries VMs"),
])
def test_bad_uplinks_stop_the_run_naming_host_and_field(monkeypatch, uplinks, drop, error):
    more = {} if uplinks is None else {"netpol_bridge_uplinks": uplinks}
    hypervisor(monkeypatch, UPLINK_READ, **more)
    result = run({"policies": [DB_FROM_WEB], "bridge_drop_unmanaged": drop}, batch=("hv1", "db"))[0]
    assert result["failed"] and "no host was changed" in result["msg"]
    assert any(e.startswith(error) for e in result["errors"]), result["errors"]


def test_a_drop_option_that_is_no_boolean_is_named():
    result = run({"policies": [DB_FROM_WEB], "bridge_drop_unmanaged": "sometimes"})[0]
    assert result["failed"]
    assert "netpol_bridge_drop_unmanaged: 'sometimes' is not a boolean (true or false)" in result["errors"]


@pytest.mark.parametrize("given, task_vars, expected", [
    ("/srv/netpol", {"inventory_dir": "/etc/ansible/prod", "playbook_dir": "/collections/netpol/fleet/playbooks"},
     "/srv/netpol"),
    ("", {"inventory_dir": "/etc/ansible/prod", "playbook_dir": "/collections/netpol/fleet/playbooks"},
     "/etc/ansible/prod"),
    (None, {"inventory_dir": None, "playbook_dir": "/collections/netpol/fleet/playbooks"}, "CWD"),
])
def test_relative_policy_paths_start_at_the_inventory_never_at_the_playbook(
        given, task_vars, expected, monkeypatch, tmp_path):
    """Run by FQCN, the playbook's directory is inside the installed collection: a user's relative
    path means their inventory's directory, or where they run ansible-playbook."""
    monkeypatch.chdir(tmp_path)
    assert policy_base_dir(given, task_vars) == (str(tmp_path) if expected == "CWD" else expected)


def test_a_missing_relative_policy_path_names_the_inventory_directory_searched(tmp_path):
    task_vars_dir = str(tmp_path / "inventories" / "prod")
    result = run({"policy_paths": ["policies/"]}, inventory_dir=task_vars_dir)[0]
    assert result["failed"] and "'policies/': no such file or directory in %s" % task_vars_dir in result["msg"]


@pytest.mark.parametrize("enforce", [False, True])
def test_enforce_jump_position_reaches_every_jump(enforce):
    state = run({"policies": [DB_FROM_WEB], "enforce_jump_position": enforce})[0]["hosts"]["db"]
    jumps = [j for table in state["tables"] for j in table["jumps"]]
    assert jumps and all(j["enforce_position"] is enforce for j in jumps)


# Fail closed on the variables themselves (issue 12.4, 13.1): nothing compiles, so no host changes.


def run_with_vars(args: Dict[str, Any], **variables: Any):
    """run() with extra variables on the running host (as task_vars) and on the inventory host web."""
    inventory = dict(INVENTORY, web=dict(INVENTORY["web"], **variables.pop("web", {})))
    task = MagicMock(async_val=0, check_mode=False, args=args)
    connection = MagicMock(transport="netpol.fleet.netns")
    connection._shell.tmpdir = None
    action = ActionModule(task, connection, MagicMock(check_mode=False), loader=None, templar=None,
                          shared_loader_obj=None)
    action._display = MagicMock()
    task_vars = dict(variables, hostvars=inventory, ansible_play_batch=["db"], playbook_dir="/nowhere",
                     groups={"all": list(inventory), "control_plane": ["cp"]})
    return action.run(task_vars=task_vars)


@pytest.mark.parametrize("variables, message", [
    ({"netpol_polices": []}, "netpol_polices: not a variable of netpol.fleet; did you mean netpol_policies?"),
    ({"web": {"netpol_label": {"app": "x"}}}, "netpol_label: not a variable of netpol.fleet; did you mean netpol_labels?"),
    ({"netpol_ssh_prot": 2222}, "netpol_ssh_prot: not a variable of netpol.fleet; did you mean netpol_ssh_port?"),
])
def test_an_unknown_netpol_variable_stops_the_run_with_the_closest_name(variables, message):
    result = run_with_vars({"policies": [DB_FROM_WEB]}, **variables)
    assert result["failed"] and "no host was changed" in result["msg"]
    assert any(e.startswith(message) for e in result["errors"]), result["errors"]
    assert "hosts" not in result


def test_every_variable_the_collection_documents_or_sets_is_known():
    """Each netpol_ name in the roles, playbooks, molecule scenarios and inventories is a known one, so a
    variable added there without documenting it fails here rather than in users' runs."""
    root = netpol_compile.COLLECTION_ROOT
    used = set()
    for top in ("roles", "playbooks", "molecule", "inventories"):
        for directory, _dirs, files in os.walk(os.path.join(root, top)):
            for name in files:
                if name.endswith((".yml", ".yaml")):
                    with open(os.path.join(directory, name), encoding="utf-8") as stream:
                        used |= set(re.findall(r"(?<![.\w])netpol_[a-z0-9_]+", stream.read()))
    assert used - netpol_compile.known_variables() == set()


@pytest.mark.parametrize("args, message", [
    ({"ssh_port": 70000}, "netpol_ssh_port: 70000 is not a port (1-65535)"),
    ({"ssh_port": 0}, "netpol_ssh_port: 0 is not a port (1-65535)"),
    ({"log": {"group": 70000, "limit": "10/min", "burst": 5}}, "netpol_log_group: 70000 is not an NFLOG group"),
    ({"log": {"group": 1, "limit": "10/min", "burst": 0}}, "netpol_log_burst: 0 is not a limit burst (1-10000)"),
    ({"log": {"group": 1, "limit": "often", "burst": 5}}, "netpol_log_limit: log limit 'often' is not N/second"),
    ({"rollback": {"timeout": -5, "confirm_timeout": 1, "dir": "/run/x"}},
     "netpol_rollback_timeout: -5 is not a number of seconds (0-86400)"),
    ({"rollback": {"timeout": 120, "confirm_timeout": "-1", "dir": "/run/x"}},
     "netpol_rollback_confirm_timeout: '-1' is not a number of seconds (0-86400)"),
    ({"rollback": {"timeout": 120, "confirm_timeout": 60, "dir": "run/x"}},
     "netpol_rollback_dir: 'run/x' is not an absolute path"),
    ({"control_plane_group": "masters"}, "netpol_control_plane_group: 'masters' is not a group of the inventory"),
    ({"privileged_exclude": ["ssh-managment"]},
     "netpol_privileged_exclude[0]: 'ssh-managment' is not the name of a default privileged rule "
     "(did you mean 'ssh-management'?)"),
])
def test_a_bad_value_is_named_by_its_variable_before_anything_compiles(args, message):
    """netpol_ssh_port: 70000 used to pass compile and fail on every host in iptables-restore --test."""
    result = run(dict(args, policies=[DB_FROM_WEB], management_cidrs=["10.0.0.240/28"]))[0]
    assert result["failed"] and "no host was changed" in result["msg"]
    assert any(e.startswith(message) for e in result["errors"]), result["errors"]


def test_no_policy_from_any_source_stops_the_run_unless_allowed():
    result = run({"policies": [], "policy_paths": []})[0]
    assert result["failed"] and result["errors"] == [netpol_compile.NO_POLICIES]
    assert "netpol_allow_no_policies" in result["errors"][0]
    allowed = run({"policies": [], "allow_no_policies": True})[0]
    assert not allowed.get("failed") and "db" in allowed["hosts"]


def test_a_policy_in_a_namespace_that_does_not_exist_is_an_error():
    """Not in netpol_namespaces, no workload in it: it protects nothing (kube-apiserver refuses it)."""
    typo = dict(DB_FROM_WEB, metadata={"name": "db-from-web", "namespace": "shpo"})
    result = run({"policies": [typo]})[0]
    assert result["failed"]
    assert result["errors"] == [
        "netpol_policies[0]: shpo/db-from-web: metadata.namespace: namespace 'shpo' does not exist: it is not in "
        "netpol_namespaces and no workload is in it (declare it in netpol_namespaces if it is meant to exist)"]
    declared = run({"policies": [typo], "namespaces": {"shpo": {}}})[0]
    assert not declared.get("failed"), declared


def test_default_deny_isolates_workloads_no_policy_selects_and_keeps_what_policies_allow():
    result = run({"policies": [DB_FROM_WEB], "default_deny": True}, batch=("web", "db"))[0]
    web = rules_of(result["hosts"]["web"])
    assert any('"shop/web isolated for ingress" -j DROP' in r for r in web)
    assert any('"shop/web isolated for egress" -j DROP' in r for r in web)
    assert any("shop/db-from-web ingress[0]" in r for r in rules_of(result["hosts"]["db"]))
    off = rules_of(run({"policies": [DB_FROM_WEB]}, batch=("web",))[0]["hosts"]["web"])
    assert not [r for r in off if "isolated" in r]


def test_default_deny_alone_is_a_run_with_policies():
    result = run({"policies": [], "default_deny": True}, batch=("web",))[0]
    assert not result.get("failed"), result


def limited(batch, play_hosts):
    task = MagicMock(async_val=0, check_mode=False, args={"policies": [DB_FROM_WEB]})
    connection = MagicMock(transport="netpol.fleet.netns")
    action = ActionModule(task, connection, MagicMock(check_mode=False), loader=None, templar=None,
                          shared_loader_obj=None)
    action._display = MagicMock()
    action.run(task_vars={"hostvars": INVENTORY, "ansible_play_batch": list(batch), "playbook_dir": "/nowhere",
                          "ansible_play_hosts_all": list(play_hosts),
                          "groups": {"all": list(INVENTORY), "control_plane": ["cp"]}})
    return [c.args[0] for c in action._display.warning.call_args_list if "limited" in c.args[0]]


def test_a_limited_run_names_the_peers_outside_it_that_hold_its_workloads_addresses():
    """--limit web: db (outside) allows web by address; a new or changed web is unknown there until db runs."""
    (warning,) = limited(["web"], ["web"])
    assert "db, outside it, select workloads of this run (web)" in warning and "--limit db,web" in warning
    assert limited(["db"], ["db"]) == []  # nobody outside selects db
    assert limited(["web"], list(INVENTORY)) == []  # serial batches: the others run in this play


def test_a_hypervisor_keeps_its_bridge_tables_managed_without_vms():
    assert netpol_compile.may_host_vms({"netpol_workloads": []})
    assert not netpol_compile.may_host_vms({})


def test_with_the_kubernetes_source_every_host_keeps_its_bridge_tables_managed(monkeypatch):
    # Only the hosts VMIs run on now are queried; one a VMI left since the last run still gets its
    # bridge-mode tables, so the chains of that VMI are removed.
    cluster = MagicMock(inputs=MagicMock(policies=(), fleet=netpol_compile.load_fleet(INVENTORY, {}), warnings=[],
                                         errors=[]), report={"resource_versions": {}, "pages": {}},
                        compiled_from="a snapshot", policy_scope=MagicMock())
    monkeypatch.setattr(netpol_compile, "read_cluster", lambda *a: cluster)
    result = run({"source": "kubernetes", "default_deny": True}, batch=("db", "web"))[0]
    assert not result.get("failed"), result
    for host in ("db", "web"):
        assert ("ipv4", "raw") in {(t["family"], t["name"]) for t in result["hosts"][host]["tables"]}


def test_every_host_variable_the_compile_reads_is_a_known_variable():
    # netpol_node_name (docs/kubernetes.md) was read here but refused as unknown.
    read = {name for name in netpol_compile.HOST_VARIABLES if name.startswith("netpol_")}
    assert "netpol_node_name" in read
    assert read - netpol_compile.known_variables() == set()


# Fleet-wide variables are compiled once, with the running host's values: a host's own value would be
# ignored for it, so it stops the run naming host and variable.


def run_batch_with_host_vars(args: Dict[str, Any], **per_host: Dict[str, Any]):
    inventory = {host: dict(values, **per_host.get(host, {})) for host, values in INVENTORY.items()}
    task = MagicMock(async_val=0, check_mode=False, args=args)
    connection = MagicMock(transport="netpol.fleet.netns")
    connection._shell.tmpdir = None
    action = ActionModule(task, connection, MagicMock(check_mode=False), loader=None, templar=None,
                          shared_loader_obj=None)
    action._display = MagicMock()
    task_vars = dict(hostvars=inventory, ansible_play_batch=["db", "web"], playbook_dir="/nowhere",
                     inventory_hostname="db", groups={"all": list(inventory), "control_plane": ["cp"]})
    return action.run(task_vars=task_vars)


@pytest.mark.parametrize("variable, value, shown", [
    ("netpol_ssh_port", 2222, "2222"),
    ("netpol_management_cidrs", ["10.9.0.0/24"], "['10.9.0.0/24']"),
    ("netpol_privileged_defaults", "false", "False"),
    ("netpol_default_deny", True, "True"),
])
def test_a_fleet_wide_variable_one_host_sets_differently_stops_the_run_naming_host_and_variable(variable, value, shown):
    result = run_batch_with_host_vars({"policies": [DB_FROM_WEB]}, web={variable: value})
    assert result["failed"] and "hosts" not in result
    assert any(e.startswith("%s: host web sets it to %s, but the compile runs once for the whole fleet (on db)"
                            % (variable, shown)) for e in result["errors"]), result["errors"]


def test_a_fleet_wide_variable_every_host_sets_alike_is_no_error():
    same = {"netpol_ssh_port": "2222"}  # a string from an inventory is the same port as the action's int
    result = run_batch_with_host_vars({"policies": [DB_FROM_WEB], "ssh_port": 2222}, web=same, db=same)
    assert not result.get("failed"), result
    ssh = [r for r in result["privileged"] if "2222" in str(r)]
    assert ssh, result["privileged"]


def test_a_fleet_wide_variable_set_on_a_host_outside_the_run_is_not_its_concern():
    result = run_batch_with_host_vars({"policies": [DB_FROM_WEB]}, cp={"netpol_ssh_port": 2222})
    assert not result.get("failed"), result


class Templating(dict):
    """A host's variables as hostvars[host] gives them: raw in _vars, each access templated (counted)."""

    def __init__(self, raw, reads, rendered=None):
        super().__init__(raw)
        self._vars, self.reads, self.rendered = raw, reads, rendered or {}

    def __getitem__(self, name):
        self.reads.append(name)
        return self.rendered.get(name, self._vars[name])


def test_plain_values_are_taken_as_they_are_a_shared_one_once_a_template_is_templated_on_every_host():
    reads: List[str] = []
    policies, port = [DB_FROM_WEB] * 3, "{{ port_of_this_host }}"
    hostvars = {host: Templating(dict(INVENTORY[host], netpol_policies=policies, netpol_ssh_port=port), reads,
                                 {"netpol_ssh_port": 22 if host != "web" else 2222}) for host in INVENTORY}
    own = netpol_compile.read_inventory({"hostvars": hostvars}, ["db", "web", "cp"])[2]
    assert reads.count("netpol_policies") == 1  # its origin; its value is plain data, one object for every host
    assert reads.count("netpol_ssh_port") == 1 + 3  # its origin once, then its template on every host of the batch
    assert reads.count("netpol_labels") == 1  # its origin: plain data is taken as it is, on no host templated
    assert list(own) == ["db", "web", "cp"] and own["web"]["netpol_ssh_port"] == 2222
    errors = netpol_compile.per_host_value_errors({"policies": policies, "ssh_port": 22, **{
        option: None for option in netpol_compile.FLEET_WIDE_OPTIONS if option not in ("policies", "ssh_port")}},
        own, "db")
    assert [e.split(" sets it")[0] for e in errors] == ["netpol_ssh_port: host web"]


class Scope:
    """A play, role or task with its vars, as Ansible's playbook objects give them."""

    def __init__(self, found, **more):
        self.__dict__.update(more)
        self.found = found

    def get_vars(self, *args, **kwargs):
        return self.found


def test_a_fleet_wide_variable_the_play_sets_for_every_host_has_no_per_host_value():
    play, role = Scope({"netpol_ssh_port": 2222}), Scope({"netpol_default_deny": True, "netpol_x": "{{ y }}"})
    task = Scope({"netpol_log_options": {}}, get_play=lambda: play, _role=role, get_dep_chain=lambda: [])
    play_wide = netpol_compile.play_wide_names(task)
    assert play_wide == {"netpol_ssh_port", "netpol_default_deny", "netpol_log_options"}  # a template may differ
    own = {"web": {"netpol_ssh_port": 22, "netpol_default_deny": False, "netpol_dns_resolvers": ["10.0.0.53"]}}
    args = {option: None for option in netpol_compile.FLEET_WIDE_OPTIONS}
    args.update(ssh_port=2222, default_deny=True, dns_resolvers=[])
    errors = netpol_compile.per_host_value_errors(args, own, "db", play_wide)
    assert [e.split(" sets it")[0] for e in errors] == ["netpol_dns_resolvers: host web"]


def test_mistyped_arguments_are_refused_as_the_validator_words_them():
    from ansible.errors import AnsibleActionFail
    with pytest.raises(AnsibleActionFail, match="Invalid options for .*: polices"):
        run({"polices": [DB_FROM_WEB]})
    with pytest.raises(AnsibleActionFail, match="namespaces"):
        run({"policies": [DB_FROM_WEB], "namespaces": "shop"})


def test_a_comma_separated_policy_path_string_is_still_a_list_of_paths(tmp_path):
    result = run({"policy_paths": "a.yml,b.yml", "base_dir": str(tmp_path)})[0]
    assert result["failed"] and "'a.yml'" in result["msg"] and "'b.yml'" in result["msg"]


def test_host_results_hold_the_same_tables_asdict_would():
    from dataclasses import asdict
    from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import Chain, Jump, Table
    table = Table("ipv4", "filter", (Chain("NETPOL-INGRESS", ("-j RETURN",)), Chain("NETPOL-X")),
                  (Jump("INPUT", "NETPOL-INGRESS", match="-m physdev --physdev-is-bridged", enforce_position=True),))
    assert netpol_compile.as_plain(table) == asdict(table)
    assert netpol_compile.as_plain(Table("ipv6", "raw")) == asdict(Table("ipv6", "raw"))


def bridge_query(batch, **args):
    return run(dict(args, stage="bridge_query"), batch=batch)[0]


def test_the_bridge_query_is_listed_for_the_hypervisors_of_the_batch_only(monkeypatch):
    hypervisor(monkeypatch, netpol_bridge_uplinks={"br10": ["eth1", "vnet1"]})
    result = bridge_query(("db", "hv1", "web"))
    assert not result.get("failed") and not result["changed"], result
    assert result["bridge_query"] == [{"host": "hv1", "ports": ["vnet0", "vnet1", "eth1"], "fdb": False}]
    assert "hosts" not in result  # nothing compiled
    assert bridge_query(("db", "web"))["bridge_query"] == []  # no hypervisor: an empty loop, no host contacted


def test_with_the_kubernetes_source_the_hosts_vmis_run_on_are_queried_with_their_fdb(monkeypatch):
    hypervisor(monkeypatch)
    asked = []
    monkeypatch.setattr(netpol_compile, "read_vmi_hosts",
                        lambda options, hostvars, fleet: asked.append((options, sorted(hostvars))) or (["web", "other"], []))
    result = bridge_query(("db", "hv1", "web"), source="kubernetes", kubernetes={"context": "prod"})
    assert result["bridge_query"] == [{"host": "hv1", "ports": ["vnet0", "vnet1"], "fdb": True},
                                      {"host": "web", "ports": [], "fdb": True}]  # "other" is not in the batch
    assert asked == [({"context": "prod"}, sorted(INVENTORY))]  # Nodes map to any inventory host
    monkeypatch.setattr(netpol_compile, "read_vmi_hosts", lambda *a: ([], ["netpol_source=kubernetes: refused"]))
    failed = bridge_query(("db",), source="kubernetes")
    assert failed["failed"] and failed["errors"] == ["netpol_source=kubernetes: refused"]


def test_a_host_s_bridges_are_read_from_its_own_query_result_never_from_hostvars(monkeypatch):
    # The registered netpol_bridge_facts is the batch's one query task, the same on every host: a
    # hypervisor the loop did not read has no ports known, whatever hostvars holds.
    hypervisor(monkeypatch, facts=None, netpol_bridge_facts=READ)
    result = run({"policies": [DB_FROM_WEB]}, batch=("hv1",))[0]
    assert result["failed"] and "the host's bridge ports were not read" in result["msg"]
    result = run({"policies": [DB_FROM_WEB], "bridge_facts": query_results({"hv1": READ})}, batch=("hv1",))[0]
    assert not result.get("failed"), result
    assert result["hosts"]["hv1"]["bridges"] == ["br10"]


def test_policies_and_namespaces_not_given_are_the_variables_templated_only_when_they_hold_a_template():
    task = MagicMock(async_val=0, check_mode=False, args={})
    action = ActionModule(task, MagicMock(transport="netpol.fleet.netns"), MagicMock(check_mode=False), loader=None,
                          templar=MagicMock(template=lambda raw: [DB_FROM_WEB] if raw == "{{ mine }}" else raw),
                          shared_loader_obj=None)
    args = action._validated_args({"netpol_policies": [DB_FROM_WEB], "netpol_namespaces": {"shop": {}}})
    assert args["policies"] == [DB_FROM_WEB] and args["namespaces"] == {"shop": {}}
    action._templar.template = MagicMock(side_effect=AssertionError("plain data is not templated"))
    assert action._validated_args({"netpol_policies": [DB_FROM_WEB]})["policies"] == [DB_FROM_WEB]
    action._templar.template = lambda raw: [DB_FROM_WEB] if raw == "{{ mine }}" else raw
    assert action._validated_args({"netpol_policies": "{{ mine }}"})["policies"] == [DB_FROM_WEB]
    task.args = {"policies": []}  # given: the variable is not read
    assert action._validated_args({"netpol_policies": [DB_FROM_WEB]})["policies"] == []


# The listing stage's reading of the inventory, taken by the compile (plugin_utils/inventory_read), against
# Ansible's own variable precedence: a real inventory, VariableManager and hostvars.
PRECEDENCE_INVENTORY = """
all:
  vars: {netpol_namespace: from-all, netpol_labels: {tier: from-all}}
  children:
    fleet:
      vars: {netpol_namespace: from-parent, netpol_labels: {tier: from-parent}}
      children:
        shop:
          vars: {netpol_namespace: shop, netpol_labels: {tier: from-child}}
          hosts:
            web: {netpol_labels: {app: web}, netpol_addresses: [10.0.0.1]}
            db: {netpol_addresses: [10.0.0.2]}
            cache: {}
            api: {netpol_addresses: [10.0.0.4]}
        preferred:
          vars: {ansible_group_priority: 10, netpol_labels: {tier: from-priority}}
          hosts: {api: {}}
    shallow:
      vars: {netpol_labels: {tier: from-a-shallower-group}}
      hosts: {cache: {}}
"""


def real_hostvars(tmp_path):
    """hostvars as a play sees them: the inventory above, a group_vars and a host_vars file beside it (the
    host_group_vars vars plugin), extra vars, a set_fact, gathered facts."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.hostvars import HostVars
    from ansible.vars.manager import VariableManager
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "inventory.yml").write_text(PRECEDENCE_INVENTORY)
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text("netpol_ports: [{name: pg, port: 5432}]\n")
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "db.yml").write_text("netpol_labels: {app: db, from: host_vars_file}\n")
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(tmp_path / "inventory.yml")])
    variables = VariableManager(loader=loader, inventory=inventory)
    variables._extra_vars = {"netpol_policies": [DB_FROM_WEB], "netpol_namespaces": {"shop": {}}}
    variables.set_nonpersistent_facts("web", {"netpol_addresses": ["10.0.0.11"]})  # set_fact over host vars
    variables.set_host_facts("cache", {"ansible_all_ipv4_addresses": ["10.0.0.3"]})  # the address fallback
    return HostVars(inventory=inventory, variable_manager=variables, loader=loader)


def test_the_fleet_is_read_with_ansible_s_precedence(tmp_path):
    plain = netpol_compile.read_inventory({"hostvars": real_hostvars(tmp_path)})[0]
    assert plain["web"]["netpol_labels"] == {"app": "web"}  # host vars over every group (replaced, not merged)
    assert plain["web"]["netpol_addresses"] == ["10.0.0.11"]  # set_fact over host vars
    assert plain["db"]["netpol_labels"] == {"app": "db", "from": "host_vars_file"}  # host_vars/ over the inventory
    assert plain["cache"]["netpol_labels"] == {"tier": "from-child"}  # the deepest group over parents and shallower
    assert plain["api"]["netpol_labels"] == {"tier": "from-priority"}  # same depth: ansible_group_priority, not name
    assert plain["cache"]["netpol_namespace"] == "shop" and plain["cache"]["ansible_all_ipv4_addresses"] == ["10.0.0.3"]
    assert all(plain[h]["netpol_ports"] == [{"name": "pg", "port": 5432}] for h in plain)  # group_vars/all.yml


class CountingHostvars(dict):
    """hostvars that count each host's reading (hostvars[host])."""

    def __init__(self, real):
        super().__init__((host, None) for host in real)
        self.real, self.reads = real, []

    def __getitem__(self, host):
        self.reads.append(host)
        return self.real[host]


def compile_stages(hostvars, tmp_path, monkeypatch, batch=("web", "db"), taken=True):
    """The role's listing stage, then its compile with the listing's reading (or without it)."""
    monkeypatch.setattr(netpol_compile.C, "DEFAULT_LOCAL_TMP", str(tmp_path / "local"))
    task_vars = {"hostvars": hostvars, "ansible_play_batch": list(batch), "playbook_dir": "/nowhere",
                 "groups": {"all": list(hostvars)}, "netpol_policies": [DB_FROM_WEB], "netpol_namespaces": {"shop": {}}}

    def stage(args):
        action = ActionModule(MagicMock(async_val=0, check_mode=False, args=args), MagicMock(transport="local"),
                              MagicMock(check_mode=False), loader=None, templar=None, shared_loader_obj=None)
        action._display = MagicMock()
        return action.run(task_vars=task_vars)

    listed = stage({"stage": "bridge_query"})
    assert not listed.get("failed"), listed
    compiled = stage({"variables_read": listed["variables_read"] if taken else None, "hosts": list(batch)})
    assert not compiled.get("failed"), compiled
    return listed, compiled


def test_the_compile_takes_the_listing_s_reading_and_compiles_what_its_own_reading_gives(tmp_path, monkeypatch):
    hostvars = CountingHostvars(real_hostvars(tmp_path))
    compiled = compile_stages(hostvars, tmp_path, monkeypatch)[1]
    assert sorted(hostvars.reads) == sorted(hostvars)  # each host's variables computed once, for both stages
    alone = compile_stages(real_hostvars(tmp_path / "again"), tmp_path, monkeypatch, taken=False)[1]
    assert compiled["hosts"] == alone["hosts"] and compiled["hosts"]["db"]["sets"]  # db admits web, at 10.0.0.11
    assert compiled["privileged"] == alone["privileged"]


def test_a_reading_for_another_batch_is_not_taken_the_compile_reads_itself(tmp_path, monkeypatch):
    hostvars = CountingHostvars(real_hostvars(tmp_path))
    compile_stages(hostvars, tmp_path, monkeypatch)
    hostvars.reads.clear()
    task_vars = {"hostvars": hostvars, "ansible_play_batch": ["web"], "playbook_dir": "/nowhere",
                 "groups": {"all": list(hostvars)}, "netpol_policies": [DB_FROM_WEB], "netpol_namespaces": {"shop": {}}}
    token = netpol_compile.inventory_read.keep(netpol_compile.C.DEFAULT_LOCAL_TMP, ({}, {}, {}), ["db"], list(hostvars))
    action = ActionModule(MagicMock(async_val=0, check_mode=False, args={"variables_read": token}),
                          MagicMock(transport="local"), MagicMock(check_mode=False), loader=None, templar=None,
                          shared_loader_obj=None)
    action._display = MagicMock()
    result = action.run(task_vars=task_vars)
    assert not result.get("failed") and list(result["hosts"]) == ["web"], result
    assert sorted(hostvars.reads) == sorted(hostvars)  # read anew: the kept reading was the batch ["db"]'s


def test_the_listing_reads_no_policy():
    task = MagicMock(async_val=0, check_mode=False, args={"stage": "bridge_query"})
    action = ActionModule(task, MagicMock(transport="local"), MagicMock(check_mode=False), loader=None,
                          templar=MagicMock(template=MagicMock(side_effect=AssertionError("templated"))),
                          shared_loader_obj=None)
    args = action._validated_args({"netpol_policies": "{{ a template the listing never needs }}"})
    assert args["policies"] == []
