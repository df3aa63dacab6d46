#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compile figures for bridge mode: one hypervisor with 200 VMs in a fleet of compile_bench's shape.

    .venv/bin/python bench/bridge_bench.py [--vms 200] [--fleet 2000] [--policies 1000]

The same fleet twice, in one process: the first --vms workloads as host-mode hosts of their own,
then as VMs on the bridge ports of one hypervisor. Printed: compile time (wall and CPU) of the whole
fleet and of the hypervisor alone (hosts=[hv0], as a --limit run compiles), as a ratio to host mode;
the hypervisor's chains, rules and sets; and the longest list of rules a new bridged packet walks
before its VM's chains (the NETPOL-BRIDGE dispatch, two rules per port).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "collection"))

from compile_bench import make_fleet, make_policies  # noqa: E402

from ansible_collections.netpol.fleet.plugins.module_utils.engine.compile import compile_fleet  # noqa: E402


def on_hypervisor(fleet, vms: int):
    """The first `vms` workloads as VMs of hv0 (ports vnet0...), spread over four bridges."""
    workloads = tuple(
        dataclasses.replace(w, host="hv0", interface="vnet%d" % i, mac="52:54:00:%02x:%02x:%02x" % (i >> 16, i >> 8 & 255, i & 255))
        if i < vms else w for i, w in enumerate(fleet.workloads))
    ports = {"hv0": {"vnet%d" % i: "br%d" % (i % 4) for i in range(vms)}}
    return dataclasses.replace(fleet, workloads=workloads), ports


def timed(function):
    start, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - start, time.process_time() - cpu


def rules(state) -> int:
    return sum(len(c.rules) for t in state.tables for c in t.chains)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=200)
    parser.add_argument("--fleet", type=int, default=2000)
    parser.add_argument("--policies", type=int, default=1000)
    args = parser.parse_args()
    hosts_fleet, drawn = make_fleet(args.fleet), make_policies(args.policies)
    vm_fleet, ports = on_hypervisor(hosts_fleet, args.vms)
    compile_fleet(hosts_fleet, drawn)  # warm caches (names, hashes) for both runs alike
    host_all, host_wall, host_cpu = timed(lambda: compile_fleet(hosts_fleet, drawn))
    vm_all, vm_wall, vm_cpu = timed(lambda: compile_fleet(vm_fleet, drawn, port_bridges=ports))
    _one, one_wall, one_cpu = timed(lambda: compile_fleet(vm_fleet, drawn, hosts=["hv0"], port_bridges=ports))
    hv0 = vm_all["hv0"]
    vm_hosts_rules = sum(rules(host_all["w%d" % i]) for i in range(args.vms))
    dispatch = max(len(c.rules) for c in hv0.table("ipv4").chains if c.name == "NETPOL-BRIDGE")
    print("| fleet | policies | VMs on hv0 | whole fleet, host mode s (CPU) | whole fleet, VMs on hv0 s (CPU) | ratio "
          "| hv0 alone s (CPU) | hv0 chains | hv0 rules | the VMs as hosts: rules | hv0 sets | NETPOL-BRIDGE rules |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("| %d | %d | %d | %.2f (%.2f) | %.2f (%.2f) | %.2f | %.2f (%.2f) | %d | %d | %d | %d | %d |" % (
        args.fleet, args.policies, args.vms, host_wall, host_cpu, vm_wall, vm_cpu, vm_cpu / host_cpu, one_wall, one_cpu,
        sum(len(t.chains) for t in hv0.tables), rules(hv0), vm_hosts_rules, len(hv0.sets), dispatch))


if __name__ == "__main__":
    main()
