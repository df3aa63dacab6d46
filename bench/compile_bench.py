#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compile time and peak memory of compile_fleet against fleet size.

    .venv/bin/python bench/compile_bench.py [--sizes 1000 2000 5000 10000] [--policies 1000]

Each size runs in a fresh process (peak RSS is per process). Fleets are synthetic but
shaped like real ones: 100 namespaces, 20 apps each, dual stack, named ports that differ
per workload; 1,000 policies mixing pod, namespace and ipBlock peers, numeric, named and
ranged ports, ingress and egress. Also prints, for one host, its rule count at the
given size and with every peer selector matching twice as many workloads.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "collection"))

from ansible_collections.netpol.fleet.plugins.module_utils.engine.compile import compile_fleet  # noqa: E402
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import (  # noqa: E402
    EGRESS,
    INGRESS,
    METADATA_NAME,
    Fleet,
    IPBlock,
    LabelSelector,
    NamedPort,
    Namespace,
    Peer,
    Policy,
    PortSpec,
    Requirement,
    Rule,
    Workload,
    labels_of,
)

NAMESPACES = 100
APPS = 20


def make_fleet(size: int, copies: int = 1) -> Fleet:
    """size workloads; copies > 1 repeats every workload (new addresses): each peer doubles."""
    workloads = []
    for copy in range(copies):
        for i in range(size):
            n = copy * size + i
            namespace = "ns%d" % (i % NAMESPACES)
            labels = {"app": "a%d" % ((i // NAMESPACES) % APPS), "tier": ("front", "back")[i % 2]}
            addresses = ("10.%d.%d.%d" % (n >> 16 & 255, n >> 8 & 255, n & 255), "fd00::%x" % n)
            ports = (NamedPort("http", 80 if i % 3 else 8080), NamedPort("pg", 5432), NamedPort("dns", 53, "UDP"))
            name = "w%d" % n
            workloads.append(Workload(name, namespace, labels_of(labels), addresses, ports, host=name))
    namespaces = tuple(
        Namespace("ns%d" % i, labels_of({METADATA_NAME: "ns%d" % i, "team": "t%d" % (i % 10), "env": ("prod", "dev")[i % 2]}))
        for i in range(NAMESPACES)
    )
    return Fleet(tuple(workloads), namespaces)


def app(name: str) -> LabelSelector:
    return LabelSelector(labels_of({"app": name}))


def make_policies(count: int, seed: int = 1) -> tuple:
    rnd = random.Random(seed)
    policies = []
    for i in range(count):
        namespace = "ns%d" % (i % NAMESPACES)
        peers = [
            Peer(pod_selector=app("a%d" % rnd.randrange(APPS))),
            Peer(namespace_selector=LabelSelector(labels_of({"team": "t%d" % rnd.randrange(10)})),
                 pod_selector=app("a%d" % rnd.randrange(APPS))),
            Peer(namespace_selector=LabelSelector(match_expressions=(Requirement("env", "In", ("prod",)),))),
            Peer(ip_block=IPBlock("10.%d.0.0/16" % rnd.randrange(4), ("10.%d.1.0/24" % rnd.randrange(4),))),
        ]
        ports = [PortSpec("TCP", rnd.choice((80, 443, 5432))), PortSpec("TCP", "http"),
                 PortSpec("UDP", 53), PortSpec("TCP", 8000, 8100)]
        ingress = (Rule(tuple(rnd.sample(peers, 2)), tuple(rnd.sample(ports, 2))),
                   Rule((peers[0],), (PortSpec("TCP", "pg"),)))
        egress = (Rule((peers[2],), (PortSpec("TCP", "http"),)), Rule((peers[3],)))
        with_egress = i % 4 == 0
        policies.append(Policy(
            namespace, "p%d" % i, app("a%d" % (i // NAMESPACES % APPS)),
            (INGRESS, EGRESS) if with_egress else (INGRESS,),
            ingress=ingress, egress=egress if with_egress else (),
        ))
    return tuple(policies)


def rule_count(state) -> int:
    return sum(len(c.rules) for t in state.tables for c in t.chains)


def measure(size: int, policies: int) -> dict:
    fleet, drawn = make_fleet(size), make_policies(policies)
    start, cpu_start = time.perf_counter(), time.process_time()
    states = compile_fleet(fleet, drawn)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    host = "w0"
    doubled = compile_fleet(make_fleet(size, copies=2), drawn, hosts=[host])[host]
    return {
        "workloads": size, "policies": policies, "seconds": round(seconds, 2), "cpu": round(cpu, 2), "peak_mib": round(peak_mib),
        "rules_total": sum(rule_count(s) for s in states.values()),
        "sets_distinct": len({s.name for st in states.values() for s in st.sets}),
        "host_rules": rule_count(states[host]), "host_rules_peers_doubled": rule_count(doubled),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000, 10000])
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.policies)))
        return
    rows = []
    for size in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(size), "--policies", str(args.policies)],
                             check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out))
    print("| workloads | policies | compile s (wall) | CPU s | peak MiB | rules (fleet) | distinct sets | rules of w0 | w0, peers doubled |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| {workloads} | {policies} | {seconds} | {cpu} | {peak_mib} | {rules_total} | {sets_distinct} | {host_rules} "
              "| {host_rules_peers_doubled} |".format(**r))
    for small, large in zip(rows, rows[1:]):
        if large["workloads"] == 2 * small["workloads"]:
            print("from %d to %d workloads: wall time x%.2f, CPU time x%.2f" % (
                small["workloads"], large["workloads"], large["seconds"] / small["seconds"], large["cpu"] / small["cpu"]))


if __name__ == "__main__":
    main()
