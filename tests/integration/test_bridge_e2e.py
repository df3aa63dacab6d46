# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bridge mode end to end: VMs (namespaces) on the bridge of one, then of two, hypervisor namespaces.

The hypervisors' global bridge-nf-call-* are 0 (as Harvester forces them): only the per-bridge flags
netpol.fleet switches on make iptables see the VMs' traffic. Each layout runs the host-mode e2e
scenarios (test_enforce_e2e's policy rounds) with demo.yml: enforce, then real TCP/UDP over IPv4 and
IPv6 from every VM namespace, the hypervisors and an outside host, compared flow for flow with the
simulator's matrix. A hypervisor's address is on its bridge, so VM -> hypervisor crosses INPUT.
"""

from __future__ import annotations

import ipaddress
import json
import re
import struct
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.bridge.zones import zones
from ansible_collections.netpol.fleet.plugins.module_utils.engine.names import workload_chain
from conftest import LAB_PLAYBOOK, delete_netns, run_playbook, write_lab_inventory
from test_enforce_e2e import (
    FAST,
    HOSTS,
    NAMESPACES,
    ROUND_BLOCKS_AND_PORTS,
    ROUND_EGRESS,
    ROUND_SELECTORS,
    changed_counts,
    policy,
    pods,
    session_token,
)
from test_module_netpol_bridge import play as netpol_bridge

sys.path.insert(0, str(Path(__file__).parent))
import l2_frames as frames  # noqa: E402  pylint: disable=wrong-import-position

BRIDGE = "br-net"
# VM short name -> its hypervisor in each layout.
LAYOUTS = {
    "one": {name: "hv1" for name in HOSTS},
    "two": {"a-web": "hv1", "a-api": "hv1", "b-db": "hv1", "b-cli": "hv2", "g-mon": "hv2"},
}
FOREIGN_EBTABLES = (
    "ebtables -t nat -N CNI-HOSTPORT", "ebtables -t nat -A CNI-HOSTPORT --among-src 02:00:0a:00:00:09 -j ACCEPT",
    "ebtables -t nat -A PREROUTING -j CNI-HOSTPORT", "ebtables -A FORWARD -i cni0 -j DROP",
)
OUTSIDE = {"netpol_addresses": ["10.77.0.200/24", "fd77::200/64"], "netpol_ports": [
    {"name": "http", "port": 80, "protocol": "TCP"}]}


def vm_port(name: str) -> str:
    return "vm-" + name


def vm_mac(index: int) -> str:
    return "52:54:00:77:00:%02x" % index


def inventory_hosts(prefix: str, layout: Dict[str, str], hosts: Optional[Dict[str, dict]] = None) -> Dict[str, dict]:
    """VM hosts (probed from, with lab_vm), hypervisor hosts (with netpol_workloads), the outside host."""
    hosts = hosts or HOSTS
    inventory: Dict[str, dict] = {}
    for number, hypervisor in enumerate(sorted(set(layout.values())), 101):
        inventory[hypervisor] = {"netpol_addresses": ["10.77.0.%d/24" % number, "fd77::%d/64" % number],
                                 "lab_bridges": [BRIDGE], "netpol_workloads": []}
    for index, (name, host_vars) in enumerate(hosts.items(), 1):
        hypervisor = layout[name]
        inventory[name] = {"netpol_addresses": host_vars["netpol_addresses"], "netpol_ports": host_vars["netpol_ports"],
                           "lab_vm": {"hypervisor": prefix + hypervisor, "bridge": BRIDGE, "port": vm_port(name),
                                      "mac": vm_mac(index)}}
        inventory[hypervisor]["netpol_workloads"].append({
            "name": name, "namespace": host_vars["netpol_namespace"], "labels": host_vars["netpol_labels"],
            "addresses": [a.split("/")[0] for a in host_vars["netpol_addresses"]], "ports": host_vars["netpol_ports"],
            "interface": vm_port(name), "mac": vm_mac(index)})
    inventory["ext"] = dict(OUTSIDE)
    return inventory


def uncounted(text: str) -> str:
    """Without the base chains' policy counters ([packets:bytes]): traffic moves them, no rule changes."""
    return re.sub(r"\[\d+:\d+\]", "[-:-]", text)


class BridgeLab:
    def __init__(self, prefix: str, directory: Path, layout: Dict[str, str]):
        self.prefix, self.directory, self.layout = prefix, directory, layout
        self.inventory = write_lab_inventory(directory / "inv", prefix, inventory_hosts(prefix, layout),
                                             {"netpol_namespaces": NAMESPACES})
        self.hypervisors = [prefix + h for h in sorted(set(layout.values()))]
        self.pristine: Dict[str, str] = {}
        self.pristine_foreign: Dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        return self.prefix + name

    def rewrite(self, hosts: Dict[str, dict], layout: Optional[Dict[str, str]] = None) -> None:
        write_lab_inventory(self.inventory.parent, self.prefix, inventory_hosts(self.prefix, layout or self.layout, hosts),
                            {"netpol_namespaces": NAMESPACES})

    def vars_file(self, policies: List[dict], **extra) -> str:
        path = self.directory / "vars.json"
        path.write_text(json.dumps({"netpol_policies": policies, **extra}))
        return "@%s" % path

    def enforce_and_verify(self, policies: List[dict], *args: str) -> str:
        result = run_playbook("playbooks/demo.yml", self.inventory, "-e", self.vars_file(policies), *FAST, *args)
        assert "flows, measured exactly as expected" in result.stdout
        return result.stdout

    def site(self, policies: List[dict], *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run_playbook("playbooks/site.yml", self.inventory, "-e", self.vars_file(policies), *FAST, *args,
                            check=check)

    def refused(self, policies: List[dict], edit: Callable[[Dict[str, dict]], None]) -> str:
        """site.yml over the lab's inventory changed by `edit` (its own is written back after): the run
        stops, no hypervisor's kernel state moved. Its output."""
        self.site(policies)
        before = self.snapshot()
        inventory = inventory_hosts(self.prefix, self.layout)
        edit(inventory)
        write_lab_inventory(self.inventory.parent, self.prefix, inventory, {"netpol_namespaces": NAMESPACES})
        try:
            result = self.site(policies, check=False)
        finally:
            self.rewrite(HOSTS)
        assert result.returncode != 0 and "no host was changed" in result.stdout, result.stdout
        assert self.snapshot() == before
        return result.stdout

    @staticmethod
    def run_in(ns: str, *argv: str, check: bool = True) -> str:
        return subprocess.run(["ip", "netns", "exec", ns, *argv], check=check, capture_output=True, text=True).stdout

    def foreign_state(self) -> None:
        """A firewall of the hypervisor's own: a FORWARD rule, a nat rule, a set, a bridge CNI's ebtables
        chain (an --among-src rule, which ebtables-nft cannot delete by specification) and a bridge
        filter rule: byte-identical throughout."""
        for ns in self.hypervisors:
            for command in FOREIGN_EBTABLES:
                self.run_in(ns, *command.split())
            for tool, peer in (("iptables", "192.0.2.7/32"), ("ip6tables", "2001:db8::7/128")):
                self.run_in(ns, tool, "-A", "FORWARD", "-s", peer, "-j", "ACCEPT")
                self.run_in(ns, tool, "-t", "nat", "-A", "POSTROUTING", "-s", peer, "-j", "RETURN")
                self.run_in(ns, tool, "-t", "raw", "-A", "PREROUTING", "-s", peer, "-j", "NOTRACK")
            self.run_in(ns, "ipset", "create", "foreign-set", "hash:ip")

    def snapshot(self) -> Dict[str, str]:
        """What a hypervisor's kernel shows: tables, sets, every bridge flag and the global switches."""
        return {ns: "\n".join([self.kernel(ns, "iptables-save"), self.kernel(ns, "ip6tables-save"),
                               self.kernel(ns, "ebtables-save"), self.kernel(ns, "ipset save"), self.flags(ns)])
                for ns in self.hypervisors}

    def kernel(self, ns: str, command: str) -> str:
        out = self.run_in(ns, *command.split())
        return "\n".join(line for line in out.splitlines() if not line.startswith("#"))

    def sysctls(self, ns: str) -> str:
        """Every net.* sysctl of the namespace but the conntrack entry count, which traffic moves."""
        out = self.run_in(ns, "sysctl", "-a", "-r", r"^net\.", check=False)
        return "\n".join(line for line in out.splitlines() if not line.startswith("net.netfilter.nf_conntrack_count"))

    def foreign(self, ns: str) -> str:
        """The hypervisor's tables, sets and sysctls without what the collection owns: its chains, rules,
        sets and record (all named netpol), and the flags it switches (per bridge, the VLAN knob)."""
        commands = ("iptables-save", "ip6tables-save", "ebtables-save", "ipset save")
        tables = [self.kernel(ns, command) for command in commands]
        lines = [line for text in tables + [self.sysctls(ns)] for line in text.splitlines()
                 if "netpol" not in line.lower() and "bridge-nf-filter-vlan-tagged" not in line]
        return uncounted("\n".join(lines))

    def flags(self, ns: str) -> str:
        return self.run_in(ns, "sh", "-c", "grep -H . /sys/class/net/*/bridge/nf_call_ip*tables "
                                           "/proc/sys/net/bridge/bridge-nf-call-ip*tables "
                                           "/proc/sys/net/bridge/bridge-nf-filter-vlan-tagged")


def build(tmp_path_factory, layout_name: str) -> Iterator[BridgeLab]:
    prefix = "npb%s%s-" % (session_token(), layout_name[0])
    lab = BridgeLab(prefix, tmp_path_factory.mktemp("npb-" + layout_name), LAYOUTS[layout_name])
    try:
        run_playbook(LAB_PLAYBOOK, lab.inventory)
        lab.foreign_state()
        lab.pristine = lab.snapshot()
        lab.pristine_foreign = {ns: lab.foreign(ns) for ns in lab.hypervisors}
        yield lab
    finally:
        run_playbook(LAB_PLAYBOOK, lab.inventory, "-e", "state=absent", check=False)
        delete_netns(prefix)


@pytest.fixture(scope="module", params=sorted(LAYOUTS))
def lab(request, tmp_path_factory) -> Iterator[BridgeLab]:
    yield from build(tmp_path_factory, request.param)


# VM1's egress denies what VM2's ingress allows, on one bridge: a-web may reach only b-db's pg;
# a-api admits anyone on http (8080), so a-web -> a-api:8080 is denied by a-web's egress alone.
ROUND_EGRESS_WINS = [
    policy("alpha", "web-egress-db-only", {"podSelector": pods(app="web"), "policyTypes": ["Egress"], "egress": [
        {"to": [{"namespaceSelector": {}, "podSelector": pods(app="db")}], "ports": [{"port": 5432}]}]}),
    policy("alpha", "api-open-http", {"podSelector": pods(app="api"), "ingress": [{"ports": [{"port": 8080}]}]}),
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


def test_egress_of_the_source_denies_what_the_destination_ingress_allows(lab):
    out = lab.enforce_and_verify(ROUND_EGRESS_WINS)
    assert re.search(r"%sa-web\s+%sa-api\s+10\.77\.0\.2\s+tcp/8080\s+deny\s+deny" % (lab.prefix, lab.prefix), out)
    assert re.search(r"%sb-cli\s+%sa-api\s+10\.77\.0\.2\s+tcp/8080\s+allow\s+allow" % (lab.prefix, lab.prefix), out)


def test_the_bridges_filter_by_their_own_flags_only(lab):
    lab.site(ROUND_SELECTORS)
    for ns in lab.hypervisors:
        flags = lab.flags(ns)
        assert "/sys/class/net/%s/bridge/nf_call_iptables:1" % BRIDGE in flags
        assert "/sys/class/net/%s/bridge/nf_call_ip6tables:1" % BRIDGE in flags
        assert "bridge-nf-call-iptables:0" in flags and "bridge-nf-call-ip6tables:0" in flags
        assert "bridge-nf-filter-vlan-tagged:1" in flags  # tagged frames meet iptables too (test_bridge_vlan)


def test_a_forward_policy_drop_and_a_hijacking_dnat_do_not_break_allowed_vm_flows(lab):
    """Docker sets FORWARD's policy to DROP; kube-proxy DNATs in nat PREROUTING. Here every new TCP
    connection to b-db would be DNATed to nowhere: bridged VM flows must not see either."""
    hijack = {"ipv4": ("iptables", "10.77.0.3", "192.0.2.99"), "ipv6": ("ip6tables", "fd77::3", "2001:db8::99")}
    try:
        for ns in lab.hypervisors:
            for tool, victim, nowhere in hijack.values():
                lab.run_in(ns, tool, "-P", "FORWARD", "DROP")
                lab.run_in(ns, tool, "-t", "nat", "-A", "PREROUTING", "-d", victim, "-p", "tcp", "-j", "DNAT",
                           "--to-destination", nowhere if tool == "iptables" else "[%s]" % nowhere)
        lab.enforce_and_verify(ROUND_SELECTORS)
    finally:
        for ns in lab.hypervisors:
            for tool, victim, nowhere in hijack.values():
                lab.run_in(ns, tool, "-P", "FORWARD", "ACCEPT")
                lab.run_in(ns, tool, "-t", "nat", "-D", "PREROUTING", "-d", victim, "-p", "tcp", "-j", "DNAT",
                           "--to-destination", nowhere if tool == "iptables" else "[%s]" % nowhere)


def test_arp_and_neighbour_discovery_survive_deny_all(lab):
    deny_all = [policy(ns, "deny-all", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
                for ns in NAMESPACES]
    lab.site(deny_all)
    web, api = lab["a-web"], lab["a-api"]
    lab.run_in(web, "ip", "neigh", "flush", "all")
    for address in ("10.77.0.2", "fd77::2"):
        probe = "import socket,sys; s=socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET, " \
                "socket.SOCK_DGRAM); s.sendto(b'x', (sys.argv[1], 7000))"
        lab.run_in(web, "python3", "-c", probe, address)
    neighbours = ""
    for attempt in range(50):  # resolution is asynchronous: wait for it, at most 50 looks
        neighbours = lab.run_in(web, "ip", "neigh", "show", "dev", "eth0")
        if attempt and all(re.search(r"^%s lladdr 52:54:00:77:00:02 " % re.escape(a), neighbours, re.M)
                           for a in ("10.77.0.2", "fd77::2")):
            break
        subprocess.run(["sleep", "0.1"], check=True)
    assert re.search(r"^10\.77\.0\.2 lladdr 52:54:00:77:00:02 ", neighbours, re.M), neighbours
    assert re.search(r"^fd77::2 lladdr 52:54:00:77:00:02 ", neighbours, re.M), neighbours


def test_bad_bridge_input_stops_the_run_before_any_host_changes(lab):
    hypervisor = sorted(set(lab.layout.values()))[0]

    def bad_ports(inventory: Dict[str, dict]) -> None:
        inventory[hypervisor]["netpol_workloads"][0]["interface"] = "vm-nope"
        inventory[hypervisor]["netpol_workloads"][1]["interface"] = "lo"

    out = lab.refused(ROUND_SELECTORS, bad_ports)
    assert "inventory host %s%s: netpol_workloads[0].interface: port vm-nope of VM alpha/a-web does not exist" % (
        lab.prefix, hypervisor) in out
    assert "netpol_workloads[1].interface: lo of VM alpha/a-api is not a port of any bridge" in out


def test_remove_leaves_every_hypervisor_as_before_the_first_run(lab):
    lab.site(ROUND_BLOCKS_AND_PORTS + ROUND_EGRESS)
    assert lab.snapshot() != lab.pristine
    run_playbook("playbooks/remove.yml", lab.inventory)
    assert lab.snapshot() == lab.pristine
    second = run_playbook("playbooks/remove.yml", lab.inventory)
    assert set(changed_counts(second.stdout).values()) == {0}


def test_a_migrated_vm_has_its_rules_on_the_new_hypervisor_only(lab):
    if len(lab.hypervisors) < 2:
        pytest.skip("the one-hypervisor layout has nowhere to migrate to")
    chain = workload_chain("ingress", "beta/b-cli")
    moved = dict(lab.layout, **{"b-cli": "hv1"})
    try:
        lab.rewrite(HOSTS, moved)
        run_playbook(LAB_PLAYBOOK, lab.inventory)  # the VM's port is now on hv1's bridge
        lab.enforce_and_verify(ROUND_SELECTORS)
        hv1, hv2 = (lab.kernel(ns, "iptables-save") for ns in lab.hypervisors)
        assert ":%s" % chain in hv1 and "vm-b-cli" in hv1
        assert chain not in hv2 and "vm-b-cli" not in hv2
    finally:
        lab.rewrite(HOSTS)
        run_playbook(LAB_PLAYBOOK, lab.inventory)
    lab.enforce_and_verify(ROUND_SELECTORS)
    assert chain in lab.kernel(lab.hypervisors[1], "iptables-save")


def test_a_vm_left_out_of_netpol_workloads_leaves_nothing_behind(lab):
    lab.site(ROUND_SELECTORS)
    chain = workload_chain("ingress", "gamma/g-mon")
    hypervisor = lab[lab.layout["g-mon"]]
    assert chain in lab.kernel(hypervisor, "iptables-save")
    lab.rewrite({name: spec for name, spec in HOSTS.items() if name != "g-mon"})
    try:
        lab.site(ROUND_SELECTORS)
        for command in ("iptables-save", "ip6tables-save"):
            rules = lab.kernel(hypervisor, command)
            assert chain not in rules and "vm-g-mon" not in rules and "gamma/g-mon" not in rules
    finally:
        lab.rewrite(HOSTS)
    # Listed again, it is isolated by the first run that knows it: a-web (app=web) is cut off from it.
    out = lab.enforce_and_verify(ROUND_SELECTORS)
    for address in ("10.77.0.5", "fd77::5"):
        assert re.search(r"%sa-web\s+%sg-mon\s+%s\s+udp/7000\s+deny\s+deny" % (lab.prefix, lab.prefix, re.escape(address)),
                         out), out


UDP_SERVER = ("import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
              "s.bind(('0.0.0.0', 7000)); s.settimeout(float(sys.argv[1]))\n"
              "try:\n  data, peer = s.recvfrom(100); print(data.decode()); s.sendto(b'reply', peer)\n"
              "except socket.timeout:\n  print('nothing')")
UDP_CLIENT = ("import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 5555)); "
              "s.settimeout(float(sys.argv[3])); s.sendto(sys.argv[2].encode(), (sys.argv[1], 7000))\n"
              "try:\n  print(s.recvfrom(100)[0].decode())\nexcept socket.timeout:\n  print('no reply')")


def udp_exchange(server_ns: str, client_ns: str, address: str, text: str, wait: float) -> tuple:
    """A UDP datagram 5555 -> 7000 and its reply: what the server got, what the client got back, each waiting
    up to `wait` seconds (an exchange that happens returns at once: a long wait costs only a loaded machine)."""
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, "python3", "-c", UDP_SERVER, str(wait)],
                              stdout=subprocess.PIPE, text=True)
    subprocess.run(["ip", "netns", "exec", server_ns, "python3", "-c",
                    "import socket,time\nfor _ in range(100):\n  s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                    "  try:\n    s.bind(('0.0.0.0', 7000)); s.close(); time.sleep(0.05)\n  except OSError:\n    break"],
                   check=True)  # until the server holds the port
    client = subprocess.run(["ip", "netns", "exec", client_ns, "python3", "-c", UDP_CLIENT, address, text, str(wait)],
                            capture_output=True, text=True, check=True).stdout.strip()
    return server.communicate(timeout=wait + 5)[0].strip(), client


def test_overlapping_addresses_on_two_bridges_keep_separate_conntrack_state(make_lab):
    """Two namespaces on a second bridge use a-web's and a-api's addresses; their established UDP flow
    must not let a-web's identical 5-tuple through to a-api, whose ingress denies everything."""
    prefix = "npb%sz-" % session_token()
    two = {name: HOSTS[name] for name in ("a-web", "a-api")}
    hosts = inventory_hosts(prefix, {name: "hv1" for name in two}, two)
    hosts["hv1"]["lab_bridges"] = [BRIDGE, "br-b"]
    hosts["b-vm"] = {"netpol_addresses": ["10.78.0.9/24"], "netpol_ports": [],
                     "lab_vm": {"hypervisor": prefix + "hv1", "bridge": "br-b", "port": "vm-b", "mac": vm_mac(9)}}
    hosts["hv1"]["netpol_workloads"].append({"name": "b-vm", "namespace": "beta", "addresses": ["10.78.0.9"],
                                             "interface": "vm-b", "mac": vm_mac(9)})
    lab = make_lab(prefix, hosts, {"netpol_namespaces": NAMESPACES})
    hypervisor = prefix + "hv1"
    for number in (1, 2):  # unmanaged neighbours on br-b, with the managed VMs' addresses
        ns = "%sx%d" % (prefix, number)
        subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(["ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "ovl%d" % number,
                        "netns", hypervisor], check=True)
        subprocess.run(["ip", "-n", hypervisor, "link", "set", "ovl%d" % number, "master", "br-b", "up"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "eth0", "up"], check=True)
        subprocess.run(["ip", "-n", ns, "address", "add", "10.77.0.%d/24" % number, "dev", "eth0"], check=True)
    run_playbook("playbooks/site.yml", lab.inventory, *FAST, "-e", json.dumps({"netpol_policies": [
        policy("alpha", "deny-all", {"podSelector": {}})]}))
    assert udp_exchange(prefix + "x2", prefix + "x1", "10.77.0.2", "on br-b", 20) == ("on br-b", "reply")
    assert udp_exchange(prefix + "a-api", prefix + "a-web", "10.77.0.2", "on br-net", 5) == ("nothing", "no reply")
    entries = subprocess.run(["ip", "netns", "exec", hypervisor, "conntrack", "-L", "-p", "udp", "--sport", "5555"],
                             capture_output=True, text=True, check=True).stdout
    # The br-b flow sits in br-b's zone; a-web's datagram was dropped before conntrack confirmed an entry.
    assert re.findall(r"zone=(\d+)", entries) == [str(zones([BRIDGE, "br-b"])["br-b"])], entries


def test_a_hypervisor_that_is_a_workload_too_is_enforced_in_both_modes(make_lab):
    """hv1 is a host-mode workload of namespace infra (its own INPUT/OUTPUT) and enforces for its VMs
    (FORWARD): both apply, and hv1 still reaches its own VMs (node traffic)."""
    prefix = "npb%sw-" % session_token()
    three = {name: HOSTS[name] for name in ("a-web", "a-api", "b-db")}
    hosts = inventory_hosts(prefix, {name: "hv1" for name in three}, three)
    hosts["hv1"].update(netpol_namespace="infra", netpol_labels={"role": "hypervisor"},
                        netpol_ports=[{"name": "ssh", "port": 22, "protocol": "TCP"}])
    lab = make_lab(prefix, hosts, {"netpol_namespaces": dict(NAMESPACES, infra={"labels": {"env": "infra"}})})
    policies = ROUND_SELECTORS + [
        policy("infra", "locked", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [
            {"from": [{"namespaceSelector": pods(env="prod"), "podSelector": pods(tier="back")}]}]})]
    path = lab.inventory.parent / "policies.json"
    path.write_text(json.dumps({"netpol_policies": policies}))
    out = run_playbook("playbooks/demo.yml", lab.inventory, "-e", "@%s" % path, *FAST).stdout
    assert "flows, measured exactly as expected" in out
    hv1 = prefix + "hv1"
    assert re.search(r"%s\s+%sa-web\s+10\.77\.0\.1\s+tcp/80\s+allow\s+allow" % (hv1, prefix), out)  # node traffic
    assert re.search(r"%sa-web\s+%s\s+10\.77\.0\.101\s+tcp/22\s+deny\s+deny" % (prefix, hv1), out)  # hv1's ingress
    assert re.search(r"%sa-api\s+%s\s+10\.77\.0\.101\s+tcp/22\s+allow\s+allow" % (prefix, hv1), out)  # back tier


def flow(lab: BridgeLab, out: str, src: str, dst: str, address: str, port: str) -> Tuple[str, str]:
    """(expected, measured) of one flow in demo.yml's table."""
    found = re.findall(r"%s\s+%s\s+%s\s+%s\s+(allow|deny)\s+(allow|deny)" % (
        re.escape(lab[src]), re.escape(lab[dst]), re.escape(address), re.escape(port)), out)
    assert len(found) == 1, "%s -> %s %s %s: %s" % (src, dst, address, port, found)
    return found[0]


def test_foreign_rules_sets_and_sysctls_stay_byte_identical_while_enforced(lab):
    lab.site(ROUND_BLOCKS_AND_PORTS + ROUND_EGRESS)
    for ns in lab.hypervisors:
        assert "NETPOL-BRIDGE" in lab.kernel(ns, "iptables-save")
        for foreign in ("-A FORWARD -s 192.0.2.7/32 -j ACCEPT", "-A POSTROUTING -s 2001:db8::7/128 -j RETURN",
                        "-A CNI-HOSTPORT ", "-A FORWARD -i cni0 -j DROP", "create foreign-set", "net.ipv4.ip_forward = "):
            assert foreign in lab.pristine_foreign[ns]
        assert lab.foreign(ns) == lab.pristine_foreign[ns]


def test_policy_and_label_updates_between_runs_change_the_vms_flows(lab):
    """b-db admits role=client pods; g-mon gets that label between runs, then the policy narrows to pg."""
    clients = [policy("beta", "db-from-clients", {"podSelector": pods(app="db"), "ingress": [
        {"from": [{"namespaceSelector": {}, "podSelector": pods(role="client")}]}]})]
    pg_only = [policy("beta", "db-from-clients", {"podSelector": pods(app="db"), "ingress": [
        {"from": [{"namespaceSelector": {}, "podSelector": pods(role="client")}], "ports": [{"port": "pg"}]}]})]
    out = lab.enforce_and_verify(clients)
    assert flow(lab, out, "g-mon", "b-db", "10.77.0.3", "tcp/5432") == ("deny", "deny")
    lab.rewrite(dict(HOSTS, **{"g-mon": dict(HOSTS["g-mon"], netpol_labels={"app": "mon", "role": "client"})}))
    try:
        out = lab.enforce_and_verify(clients)
        for address in ("10.77.0.3", "fd77::3"):
            assert flow(lab, out, "g-mon", "b-db", address, "tcp/5432") == ("allow", "allow")
            assert flow(lab, out, "g-mon", "b-db", address, "udp/7000") == ("allow", "allow")
        out = lab.enforce_and_verify(pg_only)
        for address in ("10.77.0.3", "fd77::3"):
            assert flow(lab, out, "g-mon", "b-db", address, "tcp/5432") == ("allow", "allow")
            assert flow(lab, out, "g-mon", "b-db", address, "udp/7000") == ("deny", "deny")
    finally:
        lab.rewrite(HOSTS)
    out = lab.enforce_and_verify(pg_only)
    assert flow(lab, out, "g-mon", "b-db", "fd77::3", "tcp/5432") == ("deny", "deny")


@pytest.mark.parametrize("field, value, message", [
    ("mac", "52:54:00:zz:00:01", "netpol_workloads[0].mac: invalid value '52:54:00:zz:00:01': must be a MAC address"),
    ("mac", vm_mac(2), "netpol_workloads[0].mac: MAC %s is also the MAC of alpha/a-api" % vm_mac(2)),
])
def test_a_malformed_or_duplicate_mac_stops_the_run_before_any_host_changes(lab, field, value, message):
    def bad_mac(inventory: Dict[str, dict]) -> None:
        inventory["hv1"]["netpol_workloads"][0][field] = value  # a-web's entry

    out = lab.refused(ROUND_SELECTORS, bad_mac)
    assert "inventory host %shv1: %s" % (lab.prefix, message) in out, out


# ---------------------------------------------------------------- raw frames from and to the VMs


def lab_mac(lab: BridgeLab, host: str) -> str:
    index = list(HOSTS).index(host) + 1 if host in HOSTS else None
    if index:
        return vm_mac(index)
    return json.loads(lab.run_in(lab[host], "ip", "-j", "link", "show", "eth0"))[0]["address"]


def lab_ip4(host: str) -> str:
    return "10.77.0.%d" % (list(HOSTS).index(host) + 1) if host in HOSTS else "10.77.0.200"


def lab_link_local(lab: BridgeLab, host: str) -> str:
    shown = json.loads(lab.run_in(lab[host], "ip", "-j", "-6", "address", "show", "dev", "eth0", "scope", "link"))
    return [a["local"] for a in shown[0]["addr_info"] if a.get("scope") == "link" and "local" in a][0]


def arrivals(lab: BridgeLab, sender: str, frame: bytes, mark: bytes, watchers: List[str]) -> List[str]:
    """Which watchers' eth0 received the frame, sent raw from the sender's eth0 and followed by a fence:
    an ARP request from the sender's own MAC and address (not IP: iptables never sees it)."""
    fence_mark = mark[:-4] + b"done"
    fence = frames.ethernet("ff:ff:ff:ff:ff:ff", lab_mac(lab, sender), 0x0806, frames.arp(
        1, lab_mac(lab, sender), lab_ip4(sender), "00:00:00:00:00:00", "10.77.0.254") + fence_mark)
    return frames.received(lab[sender], frame, mark, fence, fence_mark, {w: lab[w] for w in watchers})


def marked() -> bytes:
    return b"netpol-e2e-" + uuid.uuid4().hex[:12].encode()


def udp_frame(lab: BridgeLab, sender: str, src: str, dst_mac: str, dst: str, ports: Tuple[int, int]) -> Tuple[bytes, bytes]:
    mark = marked()
    if ":" in dst:
        return frames.ethernet(dst_mac, lab_mac(lab, sender), 0x86DD, frames.ipv6_udp(src, dst, ports[0], ports[1], mark)), mark
    return frames.ethernet(dst_mac, lab_mac(lab, sender), 0x0800, frames.ipv4_udp(src, dst, ports[0], ports[1], mark)), mark


def test_dhcp_and_dhcpv6_client_traffic_survives_deny_all_and_other_broadcasts_do_not(lab):
    """Every VM isolated both ways. a-web's DHCP discover and DHCPv6 solicit reach the outside host (a
    server there would answer), and that server's offer and advertise reach a-web; the same broadcasts
    on another UDP port are cut both ways."""
    lab.site([policy(ns, "deny-all", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}) for ns in NAMESPACES])
    web_ll, ext_ll = lab_link_local(lab, "a-web"), lab_link_local(lab, "ext")
    everyone, servers = "ff:ff:ff:ff:ff:ff", "33:33:00:01:00:02"
    # (The other broadcast leaves from a-web's own address: the layer-2 checks pass only discovers from 0.0.0.0.)
    for source, port, reached in (("0.0.0.0", 67, ["ext"]), ("10.77.0.1", 9999, [])):
        assert arrivals(lab, "a-web", *udp_frame(lab, "a-web", source, everyone, "255.255.255.255", (68, port)),
                        watchers=["ext"]) == reached, port
    for port, reached in ((547, ["ext"]), (9999, [])):
        assert arrivals(lab, "a-web", *udp_frame(lab, "a-web", web_ll, servers, "ff02::1:2", (546, port)),
                        watchers=["ext"]) == reached, port
    for port, reached in ((68, ["a-web"]), (9999, [])):
        assert arrivals(lab, "ext", *udp_frame(lab, "ext", "10.77.0.200", everyone, "255.255.255.255", (67, port)),
                        watchers=["a-web"]) == reached, port
    for port, reached in ((546, ["a-web"]), (9999, [])):
        assert arrivals(lab, "ext", *udp_frame(lab, "ext", ext_ll, lab_mac(lab, "a-web"), web_ll, (547, port)),
                        watchers=["a-web"]) == reached, port


@pytest.mark.parametrize("src, dst", [("10.77.0.1", "10.77.0.3"), ("fd77::1", "fd77::3")])
def test_an_invalid_segment_between_vms_is_dropped_where_a_valid_one_passes(lab, src, dst):
    """b-db admits a-web (prod, front tier) on every port: a SYN arrives, a SYN+FIN (INVALID for
    conntrack) does not."""
    lab.site(ROUND_SELECTORS)
    got = {}
    for name, flags in (("syn", 0x02), ("syn+fin", 0x03)):
        mark = marked()
        segment = (frames.ipv6_tcp if ":" in dst else frames.ipv4_tcp)(src, dst, 40000, 5432, flags, mark)
        frame = frames.ethernet(vm_mac(3), vm_mac(1), 0x86DD if ":" in dst else 0x0800, segment)
        got[name] = arrivals(lab, "a-web", frame, mark, watchers=["b-db"])
    assert got == {"syn": ["b-db"], "syn+fin": []}


def test_a_vms_egress_to_its_hypervisor_is_enforced(lab):
    """VM -> hypervisor crosses INPUT, where the VM's egress is matched by --physdev-in: g-mon
    (egress deny-all) and a-web (egress to b-db's pg only) reach no hypervisor's TCP 9100, b-cli does."""
    extra = ["-e", json.dumps({"netpol_verify_extra_ports": [{"port": 9100, "protocol": "TCP"}]})]
    out = lab.enforce_and_verify(ROUND_EGRESS, *extra)
    for number, hypervisor in enumerate(sorted(set(lab.layout.values())), 101):
        for address in ("10.77.0.%d" % number, "fd77::%d" % number):
            assert flow(lab, out, "g-mon", hypervisor, address, "tcp/9100") == ("deny", "deny")
            assert flow(lab, out, "a-web", hypervisor, address, "tcp/9100") == ("deny", "deny")
            assert flow(lab, out, "b-cli", hypervisor, address, "tcp/9100") == ("allow", "allow")


GLOBAL_SWITCHES = ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables")


def test_a_hypervisor_whose_global_switch_filters_every_bridge(lab, tmp_path):
    """Most distributions load br_netfilter with the global bridge-nf-call-* at 1: the query reports it,
    enforcement works the same, the switches are never touched, and remove leaves all as it found it."""
    run_playbook("playbooks/remove.yml", lab.inventory)
    try:
        for ns in lab.hypervisors:
            lab.run_in(ns, "sysctl", "-qw", *("%s=1" % switch for switch in GLOBAL_SWITCHES))
        before = {ns: uncounted(text) for ns, text in lab.snapshot().items()}
        query = netpol_bridge(lab.hypervisors[0], tmp_path, {"state": "query", "ports": [vm_port("a-web")]})[0]
        assert query["global_flags"]["nf_call_iptables"] == query["global_flags"]["nf_call_ip6tables"] == 1
        lab.enforce_and_verify(ROUND_SELECTORS)
        for ns in lab.hypervisors:
            assert "bridge-nf-call-iptables:1" in lab.flags(ns) and "bridge-nf-call-ip6tables:1" in lab.flags(ns)
        run_playbook("playbooks/remove.yml", lab.inventory)
        assert {ns: uncounted(text) for ns, text in lab.snapshot().items()} == before
    finally:
        for ns in lab.hypervisors:
            lab.run_in(ns, "sysctl", "-qw", *("%s=0" % switch for switch in GLOBAL_SWITCHES))


def test_mld_reports_survive_deny_all_and_other_icmpv6_does_not(lab):
    """a-web isolated both ways: its MLDv2 report (ICMPv6 143, from its link-local to ff02::16) reaches
    the outside host, its echo request to ff02::1 does not."""
    lab.site([policy(ns, "deny-all", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}) for ns in NAMESPACES])
    web_ll = lab_link_local(lab, "a-web")
    report = struct.pack("!HH", 0, 1) + struct.pack("!BBH", 4, 0, 0) + ipaddress.IPv6Address("ff02::1:ff77:1").packed
    got = {}
    probes = (("MLDv2 report", 143, report, "ff02::16", "33:33:00:00:00:16"),
              ("echo request", 128, struct.pack("!HH", 7, 1), "ff02::1", "33:33:00:00:00:01"))
    for name, kind, body, group, group_mac in probes:
        mark = marked()
        frame = frames.ethernet(group_mac, vm_mac(1), 0x86DD, frames.icmpv6(web_ll, group, kind, body + mark))
        got[name] = arrivals(lab, "a-web", frame, mark, watchers=["ext"])
    assert got == {"MLDv2 report": ["ext"], "echo request": []}
