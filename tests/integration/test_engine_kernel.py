# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine against the real kernel: compiled state applied with the raw tools.

A lab of `npc-` (`npc<n>-` per xdist worker) network namespaces on one bridge, each a dual-stack host (one IPv4-only),
listening on its declared TCP and UDP ports. The compiled HostState is restored with plain
`ipset restore` and `iptables-restore --noflush`; the kernel must read it back exactly as
compiled, and real TCP and UDP probes over IPv4 and IPv6 must match simulate.matrix on
every pair.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.ipset import text as ipset_text
from ansible_collections.netpol.fleet.plugins.module_utils.iptables import text as iptables_text
from ansible_collections.netpol.fleet.plugins.module_utils.engine.compile import compile_fleet
from ansible_collections.netpol.fleet.plugins.module_utils.engine.fleet import load_fleet
from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import CHAIN_PREFIX, SET_PREFIX, HostState
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import CompileOptions, LogOptions, PrivilegedRule
from ansible_collections.netpol.fleet.plugins.module_utils.engine.parse import load_policies
from ansible_collections.netpol.fleet.plugins.module_utils.engine.simulate import matrix

pytestmark = pytest.mark.integration

HOSTS = {  # host -> its variables; the lab's namespaces are <prefix><host>
    "web": {"netpol_namespace": "shop", "netpol_labels": {"app": "web"},
            "netpol_addresses": ["10.77.0.1", "fd77::1"],
            "netpol_ports": [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}]},
    "db": {"netpol_namespace": "shop", "netpol_labels": {"app": "db"},
           "netpol_addresses": ["10.77.0.2", "fd77::2"],
           "netpol_ports": [{"name": "pg", "port": 5432}, {"name": "dns", "port": 53, "protocol": "UDP"}]},
    "api": {"netpol_namespace": "ops", "netpol_labels": {"app": "api"},
            "netpol_addresses": ["10.77.0.3", "fd77::3"],
            "netpol_ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9100},
                             {"name": "stats", "port": 8125, "protocol": "UDP"}]},
    "mon": {"netpol_namespace": "other", "netpol_labels": {"app": "mon"},
            "netpol_addresses": ["10.77.0.4"],
            "netpol_ports": [{"name": "ui", "port": 3000}, {"name": "syslog", "port": 514, "protocol": "UDP"}]},
}
NAMESPACES = {"shop": {"labels": {"team": "a"}}, "ops": {"labels": {"team": "b"}}, "other": {}}
POLICIES = textwrap.dedent("""
    - metadata: {name: db-from-web, namespace: shop}
      spec:
        podSelector: {matchLabels: {app: db}}
        ingress:
          - from: [{podSelector: {matchLabels: {app: web}}}]
            ports: [{port: pg}, {port: 53, protocol: UDP}]
    - metadata: {name: web-out, namespace: shop}
      spec:
        podSelector: {matchLabels: {app: web}}
        egress:
          - to: [{namespaceSelector: {}}]
            ports: [{port: http}]
          - to: [{ipBlock: {cidr: 10.77.0.0/24, except: [10.77.0.2/32]}}]
            ports: [{protocol: UDP}]
          - to: [{podSelector: {matchLabels: {app: db}}}]
    - metadata: {name: api-in, namespace: ops}
      spec:
        podSelector: {}
        ingress:
          - from: [{namespaceSelector: {matchLabels: {team: a}}}]
            ports: [{port: 8080}, {port: 8125, protocol: UDP}]
    - metadata: {name: mon-no-egress, namespace: other}
      spec:
        podSelector: {}
        policyTypes: [Egress]
""")
# Metrics stay reachable from the lab's IPv4 range whatever the policies say; not over IPv6.
OPTIONS = CompileOptions(
    privileged=(PrivilegedRule("metrics", "ingress", "TCP", (9100, 9100), ("10.77.0.0/24",)),),
    log=LogOptions(group=7, limit="5/sec", burst=10),
)

SERVER = textwrap.dedent('''
    import selectors, socket, sys
    sel = selectors.DefaultSelector()
    for spec in sys.argv[1:]:
        port, proto = spec.split("/")
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(socket.AF_INET6, kind)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::", int(port)))
        if proto == "tcp":
            s.listen(64)
        sel.register(s, selectors.EVENT_READ, proto)
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            if key.data == "tcp":
                conn, _ = key.fileobj.accept()
                conn.sendall(b"ok")
                conn.close()
            else:
                data, peer = key.fileobj.recvfrom(512)
                key.fileobj.sendto(data, peer)
''')
PROBE = textwrap.dedent('''
    import json, socket, sys
    from concurrent.futures import ThreadPoolExecutor
    def probe(t):
        family = socket.AF_INET6 if t["family"] == 6 else socket.AF_INET
        kind = socket.SOCK_STREAM if t["protocol"] == "tcp" else socket.SOCK_DGRAM
        with socket.socket(family, kind) as s:
            s.settimeout(2)
            try:
                s.connect((t["address"], t["port"]))
                if t["protocol"] == "udp":
                    s.send(b"ping")
                return s.recv(8) != b""
            except (socket.timeout, PermissionError):  # dropped on the way in / on the way out
                return False
    targets = json.loads(sys.stdin.read())
    with ThreadPoolExecutor(64) as pool:
        print(json.dumps(list(pool.map(probe, targets))))
''')


def sh(*argv: str, data: str = None) -> str:
    result = subprocess.run(argv, input=data, capture_output=True, text=True, check=False)
    assert result.returncode == 0, "%s: %s" % (" ".join(argv), result.stderr)
    return result.stdout


def in_ns(namespace: str, *argv: str, data: str = None) -> str:
    return sh("ip", "netns", "exec", namespace, *argv, data=data)


@pytest.fixture(scope="module")
def prefix(worker_id: str) -> str:
    """npc-, or npc<n>- per xdist worker: workers may each build this module's lab."""
    return "npc%s-" % ("" if worker_id == "master" else worker_id.lstrip("gw"))


@pytest.fixture(scope="module")
def lab(tmp_path_factory, prefix):
    """The hosts on a bridge, listening; namespaces and listeners go away even on failure.
    Yields the inventory: namespace name -> host variables."""
    from conftest import delete_netns

    delete_netns(prefix)
    switch = prefix + "sw"
    servers: List[subprocess.Popen] = []
    script = tmp_path_factory.mktemp("npc") / "server.py"
    script.write_text(SERVER)
    try:
        sh("ip", "netns", "add", switch)
        sh("ip", "-n", switch, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        sh("ip", "-n", switch, "link", "set", "br0", "up")
        for number, (name, variables) in enumerate(sorted(HOSTS.items()), start=1):
            _add_host(prefix + name, switch, "p%d" % number, variables["netpol_addresses"])
            ports = ["%d/%s" % (p["port"], p.get("protocol", "TCP").lower()) for p in variables["netpol_ports"]]
            server = subprocess.Popen(["ip", "netns", "exec", prefix + name, sys.executable, str(script)] + ports,
                                      stdout=subprocess.PIPE, text=True)
            servers.append(server)
            assert server.stdout.readline().strip() == "ready"
        yield {prefix + name: variables for name, variables in HOSTS.items()}
    finally:
        for server in servers:
            server.kill()
            server.wait()
        delete_netns(prefix)


def _add_host(host: str, switch: str, port: str, addresses: List[str]) -> None:
    sh("ip", "netns", "add", host)
    sh("ip", "link", "add", port, "netns", switch, "type", "veth", "peer", "name", "eth0", "netns", host)
    sh("ip", "-n", switch, "link", "set", port, "master", "br0", "up")
    for address in addresses:
        if ":" in address:
            sh("ip", "-n", host, "addr", "add", address + "/64", "dev", "eth0", "nodad")
        else:
            sh("ip", "-n", host, "addr", "add", address + "/24", "dev", "eth0")
    sh("ip", "-n", host, "link", "set", "eth0", "up")
    sh("ip", "-n", host, "link", "set", "lo", "up")


def apply(host: str, state: HostState) -> None:
    """The raw tools, the way a fresh host would take the state: sets first, then chains."""
    in_ns(host, "ipset", "restore", data=ipset_text.render_restore(state.sets))
    for table in state.tables:
        tool = "ip6tables-restore" if table.family == "ipv6" else "iptables-restore"
        in_ns(host, tool, "--noflush", "--wait", data=iptables_text.render_restore(table))


@pytest.fixture(scope="module")
def enforced(lab):
    fleet = load_fleet(lab, NAMESPACES)
    policies = load_policies([dict(p, apiVersion="networking.k8s.io/v1", kind="NetworkPolicy")
                              for p in __import__("yaml").safe_load(POLICIES)], [])[0]
    states = compile_fleet(fleet, policies, OPTIONS)
    for host, state in states.items():
        apply(host, state)
    return fleet, policies, states


def test_the_kernel_reads_back_exactly_what_was_compiled(enforced):
    for host, state in enforced[2].items():
        _assert_reads_back(host, state)


EVERY_FORM = textwrap.dedent("""
    - metadata: {name: forms-in, namespace: shop}
      spec:
        podSelector: {}
        ingress:
          - from: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8, 192.168.1.7/32]}},
                   {ipBlock: {cidr: "::/0", except: ["fd77::/64"]}}, {namespaceSelector: {}}]
            ports: [{port: 1}, {port: 3}, {port: 5}, {port: 7}, {port: 9}, {port: 11}, {port: 13}, {port: 15},
                    {port: 17}, {port: 19}, {port: 21, endPort: 25}, {port: 30, endPort: 40}, {port: 53, protocol: UDP},
                    {port: 5000, protocol: SCTP}, {protocol: UDP}, {port: http}]
    - metadata: {name: forms-out, namespace: shop}
      spec:
        podSelector: {}
        egress:
          - to: [{podSelector: {}}, {namespaceSelector: {matchExpressions: [{key: team, operator: NotIn, values: [b]}]}}]
            ports: [{port: http}, {port: dns, protocol: UDP}, {port: 9000, endPort: 9100, protocol: SCTP}]
          - {}
""")
EVERY_OPTION = CompileOptions(
    privileged=(PrivilegedRule("all-53", "egress", "ALL", (53, 53), ("10.77.0.0/24", "fd77::/64")),
                PrivilegedRule("nd", "ingress", "ICMPV6", icmpv6_types=(135, 136)),
                PrivilegedRule("anything", "ingress", "ALL", cidrs=("192.0.2.1/32", "0.0.0.0/0"))),
    log=LogOptions(group=9, limit="120/hour", burst=10),
)


def test_every_rule_form_reads_back_exactly(lab, prefix, netns_cleanup):
    """Multiport chunks, ranges, SCTP, named-port sets, /0 halves, nomatch, NFLOG with a burst,
    privileged ALL/ICMPv6: each host's state restored into a fresh namespace reads back as compiled."""
    netns_cleanup(prefix + "rt-")
    policies = load_policies([dict(p, apiVersion="networking.k8s.io/v1", kind="NetworkPolicy")
                              for p in __import__("yaml").safe_load(EVERY_FORM)], [])[0]
    states = compile_fleet(load_fleet(lab, NAMESPACES), policies, EVERY_OPTION)
    for host in (prefix + "web", prefix + "db"):
        scratch = prefix + "rt-" + host[len(prefix):]
        sh("ip", "netns", "add", scratch)
        apply(scratch, states[host])
        _assert_reads_back(scratch, states[host])


def _assert_reads_back(namespace: str, state: HostState) -> None:
    for table in state.tables:
        tool = "ip6tables-save" if table.family == "ipv6" else "iptables-save"
        saved = {c.name: c for c in iptables_text.parse_save(in_ns(namespace, tool))["filter"]}
        ours = {name: chain.rules for name, chain in saved.items() if name.startswith(CHAIN_PREFIX)}
        assert ours == {c.name: c.rules for c in table.chains}, (namespace, table.family)
        assert saved["INPUT"].rules[0] == "-j NETPOL-INGRESS" and saved["OUTPUT"].rules[0] == "-j NETPOL-EGRESS"
    kernel_sets = ipset_text.parse_save(in_ns(namespace, "ipset", "save"), lambda n: n.startswith(SET_PREFIX))
    assert {n: (s.type, s.family, s.entries) for n, s in kernel_sets.items()} == {
        s.name: (s.type, s.family, ipset_text.to_saved(s).entries) for s in state.sets}, namespace


def _probe_all(records: List[Dict]) -> List[bool]:
    """Every source probes its targets at once; all sources in parallel."""
    by_source: Dict[str, List[int]] = {}
    for index, record in enumerate(records):
        by_source.setdefault(record["src"], []).append(index)

    def run(source: str) -> List[bool]:
        targets = [{k: records[i][k] for k in ("address", "family", "protocol", "port")} for i in by_source[source]]
        return json.loads(in_ns(source, sys.executable, "-c", PROBE, data=json.dumps(targets)))

    results: List[bool] = [False] * len(records)
    with ThreadPoolExecutor(len(by_source)) as pool:
        for source, outcomes in zip(by_source, pool.map(run, by_source)):
            for index, outcome in zip(by_source[source], outcomes):
                results[index] = outcome
    return results


def test_real_tcp_and_udp_traffic_matches_the_simulator_on_every_pair(enforced):
    fleet, policies = enforced[:2]
    expected = matrix(fleet, policies, options=OPTIONS)
    measured = _probe_all(expected)
    differences = [dict(r, measured=m) for r, m in zip(expected, measured) if r["reachable"] != m]
    assert not differences
    kinds = {(r["family"], r["protocol"], r["reachable"]) for r in expected}
    assert kinds == {(f, p, b) for f in (4, 6) for p in ("tcp", "udp") for b in (True, False)}


def test_icmpv6_neighbour_discovery_survives_isolation(enforced, prefix):
    """web may only reach some peers and db accepts only web, yet IPv6 neighbours still resolve."""
    web, db = prefix + "web", prefix + "db"
    in_ns(db, "ip", "-6", "neigh", "flush", "dev", "eth0")
    in_ns(web, "ip", "-6", "neigh", "flush", "dev", "eth0")
    assert _probe_all([{"src": web, "address": "fd77::2", "family": 6, "protocol": "tcp", "port": 5432}]) == [True]
    assert "fd77::1" in in_ns(db, "ip", "-6", "neigh", "show", "dev", "eth0")
