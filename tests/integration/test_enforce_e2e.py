# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""End to end: site.yml enforces, real TCP/UDP traffic over IPv4 and IPv6 matches the simulator.

One lab for the whole module (building it is the slow part); the tests run in file order and
each applies its own policy set, so every scenario starts from whatever the previous one left -
exactly what users do between two runs. playbooks/demo.yml enforces, then the verify role probes
every declared port of every host and fails on any difference from the simulator's matrix.
The upstream Kubernetes e2e scenarios that apply to host mode are grouped into a few rounds.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from conftest import LAB_PLAYBOOK, delete_netns, run_playbook, write_lab_inventory

FAST = ("-e", "netpol_gather_facts=false", "-e", "netpol_report=false")


def host(ns: str, n: int, labels: Dict[str, str], ports: List[dict]) -> dict:
    return {"netpol_namespace": ns, "netpol_labels": labels, "netpol_ports": ports,
            "netpol_addresses": ["10.77.0.%d/24" % n, "fd77::%d/64" % n]}


def tcp(name: str, port: int) -> dict:
    return {"name": name, "port": port, "protocol": "TCP"}


def udp(name: str, port: int) -> dict:
    return {"name": name, "port": port, "protocol": "UDP"}


# Named port "http" is 80 on a-web and 8080 on a-api: it must resolve per destination.
HOSTS = {
    "a-web": host("alpha", 1, {"app": "web", "tier": "front"}, [tcp("http", 80), udp("sync", 7000)]),
    "a-api": host("alpha", 2, {"app": "api", "tier": "back"},
                  [tcp("http", 8080), udp("sync", 7000), tcp("range-a", 9000), tcp("range-b", 9001)]),
    "b-db": host("beta", 3, {"app": "db", "tier": "back"}, [tcp("pg", 5432), udp("sync", 7000)]),
    "b-cli": host("beta", 4, {"app": "client"}, [tcp("http", 80)]),
    "g-mon": host("gamma", 5, {"app": "mon"}, [tcp("http", 80), udp("sync", 7000)]),
}
NAMESPACES = {"alpha": {"labels": {"env": "prod"}}, "beta": {"labels": {"env": "prod", "team": "data"}},
              "gamma": {"labels": {"env": "ops"}}}


def policy(ns: str, name: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def pods(**labels: str) -> dict:
    return {"matchLabels": labels}


def session_token() -> str:
    """Two base-36 digits of the process id: labs of concurrent test runs (and xdist workers) differ."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    pid = os.getpid()
    return digits[pid // 36 % 36] + digits[pid % 36]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator["E2E"]:
    """One lab per process (npe<token>-...), so tests may spread over workers and runs may overlap."""
    prefix = "npe%s-" % session_token()
    directory = tmp_path_factory.mktemp("npe-e2e")
    inventory = write_lab_inventory(directory / "inv", prefix, HOSTS, {"netpol_namespaces": NAMESPACES})
    try:
        run_playbook(LAB_PLAYBOOK, inventory)
        e2e = E2E(prefix, directory, inventory)
        e2e.foreign_state()
        e2e.pristine = e2e.snapshot()
        yield e2e
    finally:
        run_playbook(LAB_PLAYBOOK, inventory, "-e", "state=absent", check=False)
        delete_netns(prefix)


class E2E:
    def __init__(self, prefix: str, directory: Path, inventory: Path):
        self.prefix, self.directory, self.inventory = prefix, directory, inventory
        self.hosts = [prefix + name for name in HOSTS]
        self.pristine: Dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        """The namespace (and inventory name) of a lab host by its short name."""
        return self.prefix + name

    def relabel(self, hosts: Dict[str, dict]) -> None:
        write_lab_inventory(self.inventory.parent, self.prefix, hosts, {"netpol_namespaces": NAMESPACES})

    def vars_file(self, policies: List[dict], **extra) -> str:
        path = self.directory / "vars.json"
        path.write_text(json.dumps({"netpol_policies": policies, **extra}))
        return "@%s" % path

    def enforce_and_verify(self, policies: List[dict], *args: str) -> str:
        """demo.yml fails unless real traffic matches the simulator's matrix flow for flow."""
        result = run_playbook("playbooks/demo.yml", self.inventory, "-e", self.vars_file(policies), *FAST, *args)
        assert "flows, measured exactly as expected" in result.stdout
        return result.stdout

    def site(self, policies: List[dict], *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run_playbook("playbooks/site.yml", self.inventory, "-e", self.vars_file(policies), *FAST, *args,
                            check=check)

    def foreign_state(self) -> None:
        """Every host has a firewall of its own (rules in each base chain, a set): it must survive
        everything, byte for byte. (A namespace with no filter table at all keeps, after remove,
        an empty one: iptables cannot tell an empty table it created from one it found.)"""
        for ns in self.hosts:
            for tool, peer in (("iptables", "192.0.2.7/32"), ("ip6tables", "2001:db8::7/128")):
                for chain, flag in (("INPUT", "-s"), ("FORWARD", "-s"), ("OUTPUT", "-d")):
                    self.run_in(ns, tool, "-A", chain, flag, peer, "-j", "ACCEPT")
            # One plain foreign set, and one whose name merely starts like ours.
            for name in ("foreign-set", "netpolitics"):
                self.run_in(ns, "ipset", "create", name, "hash:ip")
                self.run_in(ns, "ipset", "add", name, "192.0.2.9")

    @staticmethod
    def run_in(ns: str, *argv: str) -> None:
        subprocess.run(["ip", "netns", "exec", ns, *argv], check=True)

    def snapshot(self) -> Dict[str, str]:
        return {h: "\n".join(self.kernel(h, tool) for tool in ("iptables-save", "ip6tables-save", "ipset save"))
                for h in self.hosts}

    def kernel(self, ns: str, command: str) -> str:
        out = subprocess.run(["ip", "netns", "exec", ns, *command.split()], check=True,
                             capture_output=True, text=True).stdout
        return "\n".join(line for line in out.splitlines() if not line.startswith("#"))

    def members(self, ns: str) -> Dict[str, List[str]]:
        """Each owned set's entries (with nomatch, without the label its first member carries)."""
        sets: Dict[str, List[str]] = {}
        for line in self.kernel(ns, "ipset save").splitlines():
            words = line.split(' comment "')[0].split()
            if words[0] == "create" and words[1].startswith("netpol"):
                sets[words[1]] = []
            elif words[0] == "add" and words[1] in sets:
                sets[words[1]].append(" ".join(words[2:]))
        return sets


def changed_counts(stdout: str) -> Dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", stdout, re.M)}


# ---- the upstream e2e scenarios, with the simulator as the expectation ---------------------------

ROUND_SELECTORS = [
    # deny-all: nothing reaches alpha, except what the next policy allows (policies are additive)
    policy("alpha", "deny-all", {"podSelector": {}, "policyTypes": ["Ingress"]}),
    # allow by pod: the api only from the web pods of its own namespace, on its named port http (8080)
    policy("alpha", "api-from-web", {"podSelector": pods(app="api"), "ingress": [
        {"from": [{"podSelector": pods(app="web")}], "ports": [{"port": "http"}]}]}),
    # allow by namespace AND pod: the database from front-tier pods of prod namespaces only
    policy("beta", "db-from-prod-front", {"podSelector": pods(app="db"), "ingress": [
        {"from": [{"namespaceSelector": pods(env="prod"), "podSelector": pods(tier="front")}]}]}),
    # allow by namespace: the client from anything in the ops namespace
    policy("beta", "cli-from-ops", {"podSelector": pods(app="client"), "ingress": [
        {"from": [{"namespaceSelector": pods(env="ops")}]}]}),
    # matchExpressions: monitoring from every namespace's pods except the web tier, UDP only
    policy("gamma", "mon-not-web", {"podSelector": {}, "ingress": [
        {"from": [{"namespaceSelector": {}, "podSelector": {"matchExpressions": [
            {"key": "app", "operator": "NotIn", "values": ["web"]},
            {"key": "tier", "operator": "Exists"}]}}],
         "ports": [{"protocol": "UDP", "port": 7000}]}]}),
]

ROUND_BLOCKS_AND_PORTS = [
    # ipBlock with except, both families: a-web's http from the lab network but a-api and b-db
    policy("alpha", "web-from-block", {"podSelector": pods(app="web"), "ingress": [
        {"from": [{"ipBlock": {"cidr": "10.77.0.0/24", "except": ["10.77.0.2/32", "10.77.0.3/32"]}},
                  {"ipBlock": {"cidr": "fd77::/64", "except": ["fd77::2/127"]}}],
         "ports": [{"port": 80}]}]}),
    # endPort: a range of the api's ports from anyone, and a second, additive policy for UDP
    policy("alpha", "api-range", {"podSelector": pods(app="api"), "ingress": [
        {"ports": [{"port": 8080, "endPort": 9000}]}]}),
    policy("alpha", "api-sync-from-beta", {"podSelector": pods(app="api"), "ingress": [
        {"from": [{"namespaceSelector": pods(team="data")}], "ports": [{"protocol": "UDP", "port": "sync"}]}]}),
    # named port resolved per destination: "http" is 80 on b-cli; g-mon has http 80 too
    policy("beta", "http-named", {"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]}),
]

ROUND_EGRESS = [
    # ingress and egress combined: the web tier may only talk to the database's pg port (and is
    # reachable from nobody); everything else a-web starts is cut
    policy("alpha", "web-locked", {"podSelector": pods(app="web"), "policyTypes": ["Ingress", "Egress"],
                                   "ingress": [], "egress": [
        {"to": [{"namespaceSelector": pods(team="data"), "podSelector": pods(app="db")}], "ports": [{"port": "pg"}]}]}),
    policy("beta", "db-from-alpha", {"podSelector": pods(app="db"), "ingress": [
        {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "alpha"}}}]}]}),
    # egress deny-all in gamma: g-mon reaches nobody, replies to others still pass
    policy("gamma", "egress-deny", {"podSelector": {}, "policyTypes": ["Egress"]}),
]


def test_selectors_deny_all_by_pod_by_namespace_by_both_and_expressions(lab):
    lab.enforce_and_verify(ROUND_SELECTORS)


def test_second_run_changes_nothing(lab):
    lab.site(ROUND_SELECTORS)
    result = lab.site(ROUND_SELECTORS)
    assert set(changed_counts(result.stdout).values()) == {0}, result.stdout


def test_ip_blocks_with_except_end_port_named_ports_and_multiple_policies(lab):
    lab.enforce_and_verify(ROUND_BLOCKS_AND_PORTS)


def test_ingress_and_egress_combined(lab):
    lab.enforce_and_verify(ROUND_EGRESS)


def test_policy_update_changes_only_what_it_must(lab):
    lab.site(ROUND_EGRESS)
    before = lab.snapshot()
    open_http = {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": 80}]}]}
    updated = ROUND_EGRESS[:2] + [policy("gamma", "egress-deny", open_http)]
    diff = lab.site(updated, "--check", "--diff").stdout
    assert lab.snapshot() == before, "check mode changed the kernel"
    counts = changed_counts(diff)
    assert counts.pop(lab["g-mon"]) > 0 and set(counts.values()) == {0}, diff
    assert "--dport 80" in diff and "gamma/egress-deny egress[0]" in diff
    lab.enforce_and_verify(updated)
    after = lab.snapshot()
    assert [h for h in lab.hosts if after[h] != before[h]] == [lab["g-mon"]]


def test_label_change_moves_a_host_between_sets_everywhere(lab):
    policies = [policy("beta", "db-from-clients", {"podSelector": pods(app="db"), "ingress": [
        {"from": [{"namespaceSelector": {}, "podSelector": pods(role="client")}]}]})]
    lab.enforce_and_verify(policies)
    assert not any("10.77.0.5" in m for m in lab.members(lab["b-db"]).values())
    lab.relabel(dict(HOSTS, **{"g-mon": dict(HOSTS["g-mon"], netpol_labels={"app": "mon", "role": "client"})}))
    try:
        lab.enforce_and_verify(policies)
        assert any("10.77.0.5" in m for m in lab.members(lab["b-db"]).values())
        assert any("fd77::5" in m for m in lab.members(lab["b-db"]).values())
    finally:
        lab.relabel(HOSTS)


def test_limit_still_resolves_peers_from_the_whole_inventory(lab):
    policies = [policy("alpha", "api-from-beta", {"podSelector": pods(app="api"), "ingress": [
        {"from": [{"namespaceSelector": pods(team="data")}]}]})]
    before = lab.snapshot()
    lab.site(policies, "--limit", lab["a-api"])
    after = lab.snapshot()
    assert [h for h in lab.hosts if after[h] != before[h]] == [lab["a-api"]]
    members = [m for entries in lab.members(lab["a-api"]).values() for m in entries]
    assert {"10.77.0.3", "10.77.0.4", "fd77::3", "fd77::4"} <= set(members)


def test_rolling_run_converges_to_what_one_run_applies(lab):
    rolling = lab.site(ROUND_BLOCKS_AND_PORTS, "-e", "netpol_serial=2")
    assert rolling.stdout.count("Compile every host's state once") == 3  # 5 hosts, batches of 2
    again = lab.site(ROUND_BLOCKS_AND_PORTS)
    assert set(changed_counts(again.stdout).values()) == {0}, again.stdout


def test_bad_input_stops_the_play_before_any_host_changes(lab):
    before = lab.snapshot()
    bad_file = lab.directory / "bad.yaml"
    bad_file.write_text(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: broken, namespace: alpha}\n"
        "spec:\n  podSelector: {}\n  ingress:\n    - ports:\n        - port: 70000\n")
    result = lab.site([], "-e", json.dumps({"netpol_policy_paths": [str(bad_file)]}), check=False)
    assert result.returncode != 0
    assert str(bad_file) in result.stdout and "alpha/broken" in result.stdout and "port" in result.stdout
    assert "no host was changed" in result.stdout
    assert lab.snapshot() == before
    assert not re.search(r"^(changed|ok): \[%s" % lab.prefix, result.stdout.split("Compile")[-1], re.M)


def test_an_unreachable_kubernetes_source_stops_the_play_before_any_host_changes(lab):
    before = lab.snapshot()
    unreachable = '{"netpol_kubernetes": {"host": "https://127.0.0.1:1", "api_key": "x", "timeout": 5}}'
    result = lab.site(ROUND_SELECTORS, "-e", "netpol_source=kubernetes", "-e", unreachable, check=False)
    assert result.returncode != 0
    assert "netpol_source=kubernetes: cannot reach the Kubernetes API at https://127.0.0.1:1" in result.stdout
    assert "no host was changed" in result.stdout
    assert lab.snapshot() == before


def test_logging_marks_denied_packets_with_policy_namespace(lab):
    lab.site(ROUND_SELECTORS, "-e", "netpol_log=true", "-e", "netpol_log_group=7", "-e", "netpol_log_limit=20/min")
    rules = lab.kernel(lab["a-api"], "iptables-save")
    assert re.search(r'-m limit --limit 20/min -j NFLOG --nflog-prefix "[^"]*ingress[^"]*" --nflog-group 7', rules)
    assert '--comment "alpha/api-from-web ingress[0]"' in rules


def test_remove_leaves_every_host_as_before_the_first_run(lab):
    lab.site(ROUND_BLOCKS_AND_PORTS + ROUND_EGRESS, "-e", "netpol_log=true")
    assert lab.snapshot() != lab.pristine
    run_playbook("playbooks/remove.yml", lab.inventory)
    assert lab.snapshot() == lab.pristine
    second = run_playbook("playbooks/remove.yml", lab.inventory)
    assert set(changed_counts(second.stdout).values()) == {0}
