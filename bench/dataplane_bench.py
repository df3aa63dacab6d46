#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Dataplane benchmark: what the compiled rules cost a new TCP connection, measured in one run.

A client and a server namespace joined by a veth pair, TCP port 5001: the server is the busiest of
the fleet's workloads at 10.0.0.2-249 (most compiled rules). Two clients, each measured against every
firewall: the early client, another of those workloads, which one more policy allows (it sorts first:
its allowance is the first rule of the naive rendering below), and the late client, the last of the
1,000 workloads (every namespace's tier=back) that a last policy allows (its allowance comes after the
other 1,000-odd expanded rules of that rendering). The server's firewall is, in turn:

  none        no rule at all (conntrack not even loaded in the namespace)
  conntrack   one `-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT` rule: the floor of any
              stateful firewall
  compiled    the host state netpol.fleet compiles for the server in a 2,000-workload / 500-policy
              fleet (bench/compile_bench.py's generator), applied with netpol_host's transaction
  linear      the same allowances rendered naively: every set match expanded into one rule per
              member, all in one chain walked top to bottom (behind the same conntrack rule)

For each, the client opens CONNECTIONS connections one after the other (connect, close) and the
server accepts them. Rows report the rate, the client loop's wall time, the CPU time of the client's
and the server's loops (user+sys, which includes the kernel's work done in their context) and the
load average, as the median over ROUNDS rounds that interleave the firewalls
(so a change of the machine's load hits all of them alike). Ratios are taken within the run.

Run as root from the repository root:  .venv/bin/python bench/dataplane_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "collection"))
sys.path.insert(0, str(ROOT / "bench"))

# pylint: disable=wrong-import-position
from compile_bench import make_fleet, make_policies  # noqa: E402
from measure import Sample, Table, median  # noqa: E402
from ansible_collections.netpol.fleet.plugins.module_utils.engine.compile import compile_fleet  # noqa: E402
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import (  # noqa: E402
    INGRESS,
    METADATA_NAME,
    LabelSelector,
    Peer,
    Policy,
    PortSpec,
    Rule,
    labels_of,
)
from ansible_collections.netpol.fleet.plugins.module_utils.ipset.text import render_restore as sets_text  # noqa: E402
from ansible_collections.netpol.fleet.plugins.module_utils.iptables.text import render_restore  # noqa: E402

PORT = 5001
CONNTRACK = "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
_MATCH_SET = re.compile(r"-m set --match-set (\S+) (src|dst)(?:,(?:src|dst))*")
CANDIDATES = range(2, 250)  # workloads whose IPv4 address is 10.0.0.N
PREFIX = 16  # the veth pair's: every workload's address (10.0.0.0-10.0.7.207) is on it
LATE = "zz-bench-allow-late"  # sorts last among the server's policies
_SOURCE = re.compile(r"-s (\S+)")

# Each side measures only its connection loop (not its interpreter's start): CPU of the process
# (user+sys), and the client its wall time.
LOOP_TIMES = """
import os, resource, sys, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
"""
SERVER_CODE = LOOP_TIMES + """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[2], %d)); s.listen(512); print("up", flush=True)
start = cpu()
for _ in range(int(sys.argv[1])):
    c, _a = s.accept(); c.close()
print(cpu() - start, flush=True)
""" % PORT
CLIENT_CODE = LOOP_TIMES + """
import socket, struct
linger = struct.pack("ii", 1, 0)  # close with RST: no TIME_WAIT pile-up over thousands of connections
start, wall = cpu(), time.perf_counter()
for _ in range(int(sys.argv[1])):
    c = socket.create_connection((sys.argv[2], %d), timeout=5)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    c.close()
print(time.perf_counter() - wall, cpu() - start, flush=True)
""" % PORT


class Pair:
    """Two namespaces joined by a veth pair (prefix npdbench)."""

    def __init__(self, server_address: str, client_address: str):
        token = uuid.uuid4().hex[:6]
        self.server, self.client = "npdbench-%s-s" % token, "npdbench-%s-c" % token
        self.server_address, self.client_address = server_address, client_address

    def __enter__(self) -> "Pair":
        for ns in (self.server, self.client):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            self.sh(ns, "ip link set lo up")
        subprocess.run(["ip", "link", "add", "npd-s", "netns", self.server, "type", "veth", "peer", "npd-c",
                        "netns", self.client], check=True)
        self.sh(self.server, "ip addr add %s/%d dev npd-s && ip link set npd-s up" % (self.server_address, PREFIX))
        self.sh(self.client, "ip addr add %s/%d dev npd-c && ip link set npd-c up" % (self.client_address, PREFIX))
        return self

    def __exit__(self, *exc) -> None:
        for ns in (self.server, self.client):
            subprocess.run(["ip", "netns", "delete", ns], check=False)

    @staticmethod
    def sh(ns: str, command: str, data: Optional[str] = None) -> str:
        done = subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", command], input=data, capture_output=True,
                              text=True, check=False)
        if done.returncode:
            raise RuntimeError("%s: %s" % (command, done.stderr))
        return done.stdout

    def connections(self, count: int) -> Sample:
        """count connections; the client's loop wall time, the CPU time of both loops."""
        server = subprocess.Popen(["ip", "netns", "exec", self.server, sys.executable, "-c", SERVER_CODE, str(count),
                                   self.server_address], stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None and server.stdout.readline().strip() == "up"
        client = subprocess.run(["ip", "netns", "exec", self.client, sys.executable, "-c", CLIENT_CODE, str(count),
                                 self.server_address], check=True, capture_output=True, text=True).stdout.split()
        server_cpu = float(server.stdout.readline())
        if server.wait(timeout=60):
            raise RuntimeError("the server did not accept every connection")
        return Sample(float(client[0]), float(client[1]) + server_cpu, os.getloadavg()[0])


def rule_count(state) -> int:
    return sum(len(c.rules) for c in state.table("ipv4", "filter").chains)


def compiled_state(workloads: int, policies: int):
    """The busiest host among CANDIDATES (most IPv4 filter rules) as the server, another candidate
    as the early client, and two more policies that let clients in on PORT: one for the early client,
    one for every namespace's tier=back workloads. The server's host state and address, the early client's."""
    fleet, drawn = make_fleet(workloads), make_policies(policies)
    candidates = [fleet.workloads[i] for i in CANDIDATES]
    states = compile_fleet(fleet, drawn, hosts=[w.host for w in candidates])
    server = max(candidates, key=lambda w: (rule_count(states[w.host]), w.host))
    client = next(w for w in candidates if w.namespace != server.namespace)
    early = allowance(server, "bench-allow", Peer(pod_selector=LabelSelector(client.labels), namespace_selector=(
        LabelSelector(labels_of({METADATA_NAME: client.namespace})))))
    late = allowance(server, LATE, Peer(pod_selector=LabelSelector(labels_of({"tier": "back"})),
                                        namespace_selector=LabelSelector()))
    state = compile_fleet(fleet, drawn + (early, late), hosts=[server.host])[server.host]
    return state, server.addresses[0], client.addresses[0]


def allowance(server, name: str, peer: Peer) -> Policy:
    """A policy of the server's namespace that lets peer in to the server on TCP PORT."""
    return Policy(server.namespace, name, LabelSelector(server.labels), (INGRESS,),
                  ingress=(Rule((peer,), (PortSpec("TCP", PORT),)),))


def late_client(rules: Sequence[str]) -> str:
    """The address the last rule of the late allowance's expansion admits: the late client."""
    return _SOURCE.search([r for r in rules if '"ns' in r and LATE in r][-1]).group(1)


def first_admitting(rules: Sequence[str], address: str) -> int:
    """The index of the first naive rule whose source holds address, for TCP PORT (every naive rule has a
    source or a destination: a set match expanded; the destination ones are egress rules)."""
    def admits(rule: str) -> bool:
        source = _SOURCE.search(rule)
        port = re.search(r"--dports? (\S+)", rule)
        return bool(source) and ipaddress.ip_address(address) in ipaddress.ip_network(source.group(1), strict=False) \
            and "-p udp" not in rule and (port is None or str(PORT) in port.group(1).split(","))
    return next(i for i, r in enumerate(rules) if admits(r))


def linear_rules(state) -> List[str]:
    """The IPv4 filter allowances with every set match expanded into one rule per member, in order
    (a named-port set's member by its address: the rule keeps its other matches)."""
    members = {s.name: [m.entry for m in s.members if not m.nomatch] for s in state.sets}
    table = state.table("ipv4", "filter")
    rules = []
    for chain in table.chains:
        for rule in chain.rules:
            if "-j ACCEPT" not in rule and "-j RETURN" not in rule:
                continue
            found = _MATCH_SET.search(rule)
            if not found:
                continue
            flag = "-s" if found.group(2) == "src" else "-d"
            for entry in members.get(found.group(1), ()):
                rules.append(_MATCH_SET.sub("%s %s" % (flag, entry.split(",")[0]), rule, count=1).replace("-j RETURN",
                                                                                                         "-j ACCEPT"))
    return rules


def firewall_none(pair: Pair) -> None:
    pair.sh(pair.server, "iptables -F INPUT; iptables -P INPUT ACCEPT")


def firewall_conntrack(pair: Pair) -> None:
    pair.sh(pair.server, "iptables -A INPUT %s" % CONNTRACK)


def firewall_compiled(pair: Pair, state) -> None:
    pair.sh(pair.server, "ipset restore", sets_text(state.sets))
    pair.sh(pair.server, "iptables-restore --noflush", render_restore(state.table("ipv4", "filter")))


def firewall_linear(pair: Pair, rules: Sequence[str]) -> None:
    text = ["*filter", ":NAIVE - [0:0]", "-A INPUT %s" % CONNTRACK, "-A INPUT -j NAIVE"]
    text += ["-A NAIVE %s" % r for r in rules] + ["-A NAIVE -p tcp -j DROP", "COMMIT"]
    pair.sh(pair.server, "iptables-restore --noflush", "\n".join(text) + "\n")


def run_config(setup: Callable[[Pair], None], count: int, addresses: Tuple[str, str]) -> Sample:
    with Pair(*addresses) as pair:
        setup(pair)
        pair.connections(50)  # warm: ARP, the conntrack module, the first accept
        return pair.connections(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", type=int, default=2000)
    parser.add_argument("--policies", type=int, default=500)
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="500 connections, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.connections, args.rounds = 500, 2
    state, server_address, early_address = compiled_state(args.workloads, args.policies)
    rules = linear_rules(state)
    clients = {"early client": early_address, "late client": late_client(rules)}
    configs: Dict[str, Callable[[Pair], None]] = {
        "no firewall": firewall_none,
        "conntrack alone": firewall_conntrack,
        "compiled host state": lambda pair: firewall_compiled(pair, state),
        "naive linear rendering": lambda pair: firewall_linear(pair, rules),
    }
    samples: Dict[Tuple[str, str], List[Sample]] = {(c, f): [] for c in clients for f in configs}
    for round_number in range(args.rounds):
        for (client, name), taken in samples.items():
            taken.append(run_config(configs[name], args.connections, (server_address, clients[client])))
            print("round %d %s, %s: %.0f conn/s" % (round_number, client, name, args.connections / taken[-1].wall),
                  file=sys.stderr, flush=True)
    print("Server %s: %d IPv4 filter rules in %d chains, %d sets (%d members); naive rendering: %d rules. %s. "
          "%d connections per run, median of %d interleaved rounds.\n" % (
              server_address, rule_count(state), len(state.table("ipv4", "filter").chains), len(state.sets),
              sum(len(s.members) for s in state.sets), len(rules) + 3, "; ".join(
                  "%s %s: its allowance is naive rule %d" % (c, a, first_admitting(rules, a) + 1)
                  for c, a in clients.items()), args.connections, args.rounds))
    for client in clients:
        report(client, {name: median(samples[(client, name)]) for name in configs}, args.connections)


def report(client: str, results: Dict[str, Sample], connections: int) -> None:
    """One client's table (CPU ratios to no firewall) and its rates against conntrack alone."""
    table = Table()
    for name, taken in results.items():
        table.add("%s, %s: %.0f conn/s, %.0f us CPU per connection" % (
            client, name, connections / taken.wall, 1e6 * taken.cpu / connections), taken, floor=results["no firewall"])
    rate = {name: connections / s.wall for name, s in results.items()}
    print(table.markdown("CPU ratio to no firewall"))
    print()
    for name in ("conntrack alone", "compiled host state", "naive linear rendering"):
        print("- %s, %s: rate %.2f of no firewall's, %.2f of conntrack alone's (cost beyond conntrack %.1f%%)" % (
            client, name, rate[name] / rate["no firewall"], rate[name] / rate["conntrack alone"],
            100 * (1 - rate[name] / rate["conntrack alone"])))
    print()


if __name__ == "__main__":
    main()
