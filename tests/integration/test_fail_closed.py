# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fail closed on the real kernel: what the privileged paths let through, and no more.

A lab of `npf-` (`npf<n>-` per xdist worker) network namespaces on one bridge: `cp` (the control
plane, also the fleet's DNS resolver, listening on TCP 6443 and UDP/TCP 53) and `node` (a worker,
listening on UDP/TCP 53 too). Every workload is isolated for ingress by a deny-all policy; the
privileged rules come from the same variables the enforce role takes. The compiled state is
restored with the raw tools, then real packets decide:

- DNS to the resolver that is a fleet host passes (its ingress on 53 is privileged), on that host
  only: 53 on `node` stays closed (issue 12.5);
- a TCP packet conntrack calls INVALID (SYN+FIN) to the privileged kube-apiserver port never
  reaches the resolver's TCP layer, while a plain SYN does (issue 12.7). A raw socket on `cp` sees
  every TCP packet that passed INPUT, so it tells which one the filter let through.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from typing import Dict, List

import pytest
import yaml

from ansible_collections.netpol.fleet.plugins.module_utils.engine.compile import compile_fleet
from ansible_collections.netpol.fleet.plugins.module_utils.engine.fleet import default_deny_policies, load_fleet
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import CompileOptions
from ansible_collections.netpol.fleet.plugins.module_utils.engine.parse import load_policies
from ansible_collections.netpol.fleet.plugins.module_utils.engine.privileged import rules_from_vars

from test_engine_kernel import SERVER, _add_host, _probe_all, apply, in_ns, sh

pytestmark = pytest.mark.integration

HOSTS = {
    "cp": {"netpol_namespace": "kube-system", "netpol_addresses": ["10.78.0.1", "fd78::1"],
           "ports": ["6443/tcp", "53/udp", "53/tcp"]},
    "node": {"netpol_namespace": "apps", "netpol_addresses": ["10.78.0.2", "fd78::2"],
             "ports": ["53/udp", "53/tcp"]},
}
DENY_ALL_INGRESS = [
    {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
     "metadata": {"name": "deny-all", "namespace": namespace}, "spec": {"podSelector": {}}}
    for namespace in ("kube-system", "apps")
]

# Counts, for a while after "ready", the TCP packets to 6443 that reach this host's TCP layer
# (a raw socket gets a copy of each one after INPUT), by flags: "syn" and "synfin".
OBSERVER = textwrap.dedent('''
    import json, select, socket, sys
    family = socket.AF_INET6 if sys.argv[1] == "6" else socket.AF_INET
    s = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_TCP)
    seen = {"syn": 0, "synfin": 0}
    print("ready", flush=True)
    while select.select([s], [], [], 3)[0]:
        data = s.recv(65535)
        tcp = data[20:] if family == socket.AF_INET else data  # IPv6 raw sockets get no IP header
        if int.from_bytes(tcp[2:4], "big") != 6443:
            continue
        flags = tcp[13] & 0x3f
        if flags == 0x02:
            seen["syn"] += 1
        elif flags == 0x03:
            seen["synfin"] += 1
    print(json.dumps(seen), flush=True)
''')
# Sends one TCP segment with the given flags from src to dst:6443 through a raw socket.
SENDER = textwrap.dedent('''
    import ipaddress, socket, struct, sys
    src, dst, flags = sys.argv[1], sys.argv[2], int(sys.argv[3])
    six = ":" in dst
    family = socket.AF_INET6 if six else socket.AF_INET
    segment = struct.pack("!HHIIBBHHH", 40000, 6443, 1000, 0, 5 << 4, flags, 64240, 0, 0)
    packed = ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed
    pseudo = packed + (struct.pack("!I3xB", len(segment), 6) if six else struct.pack("!xBH", 6, len(segment)))
    data = pseudo + segment
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    segment = segment[:16] + struct.pack("!H", ~total & 0xffff) + segment[18:]
    s = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_TCP)
    s.bind((src, 0))
    s.sendto(segment, (dst, 0))
''')


@pytest.fixture(scope="module")
def prefix(worker_id: str) -> str:
    return "npf%s-" % ("" if worker_id == "master" else worker_id.lstrip("gw"))


@pytest.fixture(scope="module")
def lab(tmp_path_factory, prefix):
    from conftest import delete_netns

    delete_netns(prefix)
    switch = prefix + "sw"
    servers: List[subprocess.Popen] = []
    script = tmp_path_factory.mktemp("npf") / "server.py"
    script.write_text(SERVER)
    try:
        sh("ip", "netns", "add", switch)
        sh("ip", "-n", switch, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        sh("ip", "-n", switch, "link", "set", "br0", "up")
        for number, (name, variables) in enumerate(sorted(HOSTS.items()), start=1):
            _add_host(prefix + name, switch, "p%d" % number, variables["netpol_addresses"])
            server = subprocess.Popen(["ip", "netns", "exec", prefix + name, sys.executable, str(script)]
                                      + variables["ports"], stdout=subprocess.PIPE, text=True)
            servers.append(server)
            assert server.stdout.readline().strip() == "ready"
        yield {prefix + name: {k: v for k, v in variables.items() if k != "ports"} for name, variables in HOSTS.items()}
    finally:
        for server in servers:
            server.kill()
            server.wait()
        delete_netns(prefix)


@pytest.fixture(scope="module")
def enforced(lab, prefix):
    """Deny-all ingress everywhere; privileged rules as the enforce role builds them, with cp as the
    control plane and as the resolver named in netpol_dns_resolvers."""
    fleet = load_fleet(lab, {})
    cp = lab[prefix + "cp"]["netpol_addresses"]
    privileged = rules_from_vars({
        "netpol_dns_resolvers": cp,
        "netpol_node_addresses": [a for variables in lab.values() for a in variables["netpol_addresses"]],
        "netpol_control_plane_addresses": cp,
    })
    policies = load_policies(DENY_ALL_INGRESS, [])[0]
    for host, state in compile_fleet(fleet, policies, CompileOptions(privileged=privileged)).items():
        apply(host, state)
    return lab


def flows(source: str, address: str, port: int, protocols=("udp", "tcp")) -> List[Dict]:
    family = 6 if ":" in address else 4
    return [{"src": source, "address": address, "family": family, "protocol": p, "port": port} for p in protocols]


@pytest.mark.parametrize("address", ["10.78.0.1", "fd78::1"])
def test_dns_to_the_fleets_own_resolver_survives_deny_all(enforced, prefix, address):
    assert _probe_all(flows(prefix + "node", address, 53)) == [True, True]


@pytest.mark.parametrize("address", ["10.78.0.2", "fd78::2"])
def test_only_the_resolver_opens_53_other_hosts_stay_isolated(enforced, prefix, address):
    assert _probe_all(flows(prefix + "cp", address, 53)) == [False, False]


@pytest.mark.parametrize("source, destination", [("10.78.0.2", "10.78.0.1"), ("fd78::2", "fd78::1")])
def test_an_invalid_packet_to_a_privileged_port_does_not_pass(enforced, prefix, source, destination):
    """kube-apiserver (6443) is privileged from every node; a SYN+FIN to it is INVALID for conntrack
    and is dropped before the privileged RETURN, while a plain SYN still reaches the host."""
    family = "6" if ":" in destination else "4"
    observer = subprocess.Popen(["ip", "netns", "exec", prefix + "cp", sys.executable, "-c", OBSERVER, family],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert observer.stdout.readline().strip() == "ready"
        for flags in ("2", "3"):  # SYN, then SYN+FIN
            in_ns(prefix + "node", sys.executable, "-c", SENDER, source, destination, flags)
        seen = __import__("json").loads(observer.stdout.readline())
    finally:
        observer.kill()
        observer.wait()
    assert seen == {"syn": 1, "synfin": 0}


@pytest.mark.parametrize("default_deny, reachable", [(False, True), (True, False)])
def test_default_deny_isolates_a_host_no_policy_selects_from_its_first_run(lab, prefix, default_deny, reachable):
    """netpol_default_deny (issue 12.8): a new host that no policy selects is closed by the first run
    on it (only the privileged paths stay: DNS out to the resolver), instead of open until a policy
    selects it. What the collection owns is removed first, so each case is a host's first run."""
    for host in lab:
        remove_owned(host)
    fleet = load_fleet(lab, {})
    cp = lab[prefix + "cp"]["netpol_addresses"]
    nodes = [a for variables in lab.values() for a in variables["netpol_addresses"]]
    privileged = rules_from_vars({"netpol_dns_resolvers": cp, "netpol_node_addresses": nodes})
    policies = default_deny_policies(fleet) if default_deny else ()
    for host, state in compile_fleet(fleet, policies, CompileOptions(privileged=privileged)).items():
        apply(host, state)
    node, node_addresses = prefix + "node", lab[prefix + "node"]["netpol_addresses"]
    into_node = [f for a in node_addresses for f in flows(prefix + "cp", a, 53)]
    assert _probe_all(into_node) == [reachable] * 4
    assert _probe_all(flows(node, "10.78.0.1", 6443, ("tcp",))) == [reachable]  # no kube rules: plain egress
    out_to_dns = [f for a in cp for f in flows(node, a, 53)]
    assert _probe_all(out_to_dns) == [True] * 4  # privileged both ways: out of node, into the resolver


def remove_owned(host: str) -> None:
    """Our jumps, chains and sets only, with the raw tools (the remove role's job, done by hand)."""
    for tool in ("iptables", "ip6tables"):
        saved = in_ns(host, tool + "-save", "-t", "filter")
        for base, chain in (("INPUT", "NETPOL-INGRESS"), ("OUTPUT", "NETPOL-EGRESS")):
            if "-A %s -j %s" % (base, chain) in saved:
                in_ns(host, tool, "-w", "-D", base, "-j", chain)
        owned = [line.split()[0][1:] for line in saved.splitlines() if line.startswith(":NETPOL-")]
        for chain in owned:
            in_ns(host, tool, "-w", "-F", chain)
        for chain in owned:
            in_ns(host, tool, "-w", "-X", chain)
    for name in in_ns(host, "ipset", "list", "-n").split():
        if name.startswith(("netpol4-", "netpol6-")):
            in_ns(host, "ipset", "destroy", name)


POLICY_T = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "deny-all", "namespace": "t"}, "spec": {"podSelector": {}}}


def test_mistakes_in_variables_stop_site_yml_before_any_host_changes(make_lab):
    """Through ansible-playbook, so the place Ansible read a variable from is real (issue 12.4, 13.1,
    12.2): a misspelt variable, a port out of range, a policy in a namespace that does not exist and
    a run without any policy each stop the play, and the host's tables stay as they were."""
    from conftest import run_playbook
    from test_enforce_e2e import session_token

    host = {"netpol_namespace": "t", "netpol_addresses": ["10.79.0.1/24", "fd79::1/64"]}
    lab = make_lab("npf%sv-" % session_token(), {"a": host})
    group_vars = lab.inventory.parent / "group_vars" / "all.yml"
    group_vars.parent.mkdir()
    group_vars.write_text("---\nnetpol_polices:\n  - %s\n" % json.dumps(POLICY_T))
    before = {tool: in_ns(lab.hosts[0], tool) for tool in ("iptables-save", "ip6tables-save")}
    fast = ("-e", "netpol_gather_facts=false")

    typo = run_playbook("playbooks/site.yml", lab.inventory, *fast, check=False)
    assert typo.returncode != 0
    assert re.search(r"netpol_polices \(set in %s:\d+:\d+\): not a variable of netpol.fleet; did you mean "
                     r"netpol_policies\?" % re.escape(str(group_vars)), typo.stdout), typo.stdout
    group_vars.write_text("---\n")
    policies = ("-e", json.dumps({"netpol_policies": [POLICY_T]}))
    port = run_playbook("playbooks/site.yml", lab.inventory, *fast, *policies, "-e", "netpol_ssh_port=70000",
                        check=False)
    assert port.returncode != 0 and "netpol_ssh_port: 70000 is not a port (1-65535)" in port.stdout
    elsewhere = ("-e", json.dumps({"netpol_policies": [dict(POLICY_T, metadata={"name": "x", "namespace": "tt"})]}))
    namespace = run_playbook("playbooks/site.yml", lab.inventory, *fast, *elsewhere, check=False)
    assert namespace.returncode != 0 and "namespace 'tt' does not exist" in namespace.stdout
    nothing = run_playbook("playbooks/site.yml", lab.inventory, *fast, check=False)
    assert nothing.returncode != 0 and "no NetworkPolicy found in any source" in nothing.stdout
    for result in (typo, port, namespace, nothing):
        assert "no host was changed" in result.stdout
    assert {tool: in_ns(lab.hosts[0], tool) for tool in before} == before


def test_a_per_host_value_of_a_fleet_wide_variable_stops_site_yml_naming_host_and_variable(make_lab):
    """netpol_ssh_port in one host's own variables used to be silently ignored: the compile runs once,
    with the running host's value, for every host's privileged rules."""
    from conftest import run_playbook
    from test_enforce_e2e import session_token

    def host(n: int, **own) -> dict:
        return dict({"netpol_namespace": "t", "netpol_addresses": ["10.79.0.%d/24" % n, "fd79::%d/64" % n]}, **own)

    lab = make_lab("npf%sp-" % session_token(), {"a": host(1), "b": host(2, netpol_ssh_port=2222)})
    before = {ns: {tool: in_ns(ns, tool) for tool in ("iptables-save", "ip6tables-save")} for ns in lab.hosts}
    result = run_playbook("playbooks/site.yml", lab.inventory, "-e", "netpol_gather_facts=false",
                          "-e", json.dumps({"netpol_policies": [POLICY_T]}), check=False)
    assert result.returncode != 0
    assert ("netpol_ssh_port: host %sb sets it to 2222, but the compile runs once for the whole fleet (on %sa) with 22"
            % (lab.prefix, lab.prefix)) in result.stdout, result.stdout
    assert "no host was changed" in result.stdout
    assert {ns: {tool: in_ns(ns, tool) for tool in before[ns]} for ns in lab.hosts} == before


def test_a_fleet_wide_variable_the_play_sets_overrides_every_hosts_own_value_and_is_enforced(make_lab, tmp_path):
    """A play's vars: beat every host's inventory value (Ansible's precedence), so a host's own
    netpol_management_cidrs is no per-host value there: the run goes on, and every host admits SSH
    from the play's management CIDR only."""
    from conftest import run_playbook
    from test_enforce_e2e import session_token

    def host(n: int, **own) -> dict:
        return dict({"netpol_namespace": "t", "netpol_addresses": ["10.79.0.%d/24" % n, "fd79::%d/64" % n]}, **own)

    lab = make_lab("npf%sw-" % session_token(), {"a": host(1), "b": host(2, netpol_management_cidrs=["10.98.0.0/24"])})
    play = tmp_path / "play-vars.yml"
    play.write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False,
                                     "vars": {"netpol_management_cidrs": ["10.99.0.0/24"]},
                                     "roles": ["netpol.fleet.enforce"]}]))
    run_playbook(str(play), lab.inventory, "-e", json.dumps({"netpol_policies": [POLICY_T]}))
    for ns in lab.hosts:
        rules = in_ns(ns, "iptables-save")
        assert "-s 10.99.0.0/24" in rules and "10.98.0.0" not in rules, rules
