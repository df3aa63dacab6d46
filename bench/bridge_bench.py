#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compile figures for bridge mode: one hypervisor with 200 VMs in a fleet of compile_bench's shape.

    .venv/bin/python bench/bridge_bench.py [--vms 200] [--fleet 2000] [--policies 1000] [--repeat 5]

The same fleet twice, in one process: the first --vms workloads as host-mode hosts of their own,
then as VMs on the bridge ports of one hypervisor. Every row is the median of --repeat compiles:
wall time, CPU time (user+sys of the process tree, bench/measure.py) and the load average, the
ratio on CPU to host mode's whole-fleet compile of the same run. Then the hypervisor's state: its
chains and rules per table, its sets, and the longest list of rules a new bridged packet walks before
its VMs' chains (the dispatch: NETPOL-BRIDGE, two rules per port, then NETPOL-BR-EGRESS and
NETPOL-BR-INGRESS, one each).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "collection"))

from compile_bench import make_fleet, make_policies  # noqa: E402
from measure import Table, measured, median  # noqa: E402

from ansible_collections.netpol.fleet.plugins.module_utils.engine.compile import compile_fleet  # noqa: E402

HYPERVISOR = "hv0"
BRIDGES = 4
# A new bridged packet walks these linear lists: is a managed port involved, whose egress, whose ingress.
DISPATCH_CHAINS = ("NETPOL-BRIDGE", "NETPOL-BR-EGRESS", "NETPOL-BR-INGRESS")


def on_hypervisor(fleet, vms: int):
    """The first `vms` workloads as VMs of hv0 (ports vnet0...), spread over four bridges."""
    workloads = tuple(
        dataclasses.replace(w, host=HYPERVISOR, interface="vnet%d" % i, mac="52:54:00:%02x:%02x:%02x" % (i >> 16, i >> 8 & 255, i & 255))
        if i < vms else w for i, w in enumerate(fleet.workloads))
    ports = {HYPERVISOR: {"vnet%d" % i: "br%d" % (i % BRIDGES) for i in range(vms)}}
    return dataclasses.replace(fleet, workloads=workloads), ports


def repeated(action, repeat: int):
    """The median sample of `repeat` runs of action, and the last run's result."""
    runs = [measured(action) for _attempt in range(repeat)]
    return median([taken for taken, _value in runs]), runs[-1][1]


def rules(state) -> int:
    return sum(len(c.rules) for t in state.tables for c in t.chains)


def state_figures(hv0, host_all, vms: int) -> str:
    """hv0's chains and rules per table, its sets, the NETPOL-BRIDGE dispatch, and the rules the
    same workloads need as hosts of their own."""
    lines = ["| hv0 table | chains | rules |", "|---|---|---|"]
    lines += ["| %s %s | %d | %d |" % (t.family, t.name, len(t.chains), sum(len(c.rules) for c in t.chains))
              for t in hv0.tables]
    lines.append("| **all tables** | **%d** | **%d** |" % (sum(len(t.chains) for t in hv0.tables), rules(hv0)))
    dispatch = {c.name: len(c.rules) for c in hv0.table("ipv4").chains if c.name in DISPATCH_CHAINS}
    lines.append("\nhv0: %d sets; the dispatch by port, per IP family: %s. The %d workloads as hosts of their own: "
                 "%d rules on %d hosts." % (len(hv0.sets), ", ".join("%s %d rules" % (name, dispatch[name])
                                                                      for name in DISPATCH_CHAINS),
                                           vms, sum(rules(host_all["w%d" % i]) for i in range(vms)), vms))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=200)
    parser.add_argument("--fleet", type=int, default=2000)
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5, help="compiles per row (median)")
    args = parser.parse_args()
    hosts_fleet, drawn = make_fleet(args.fleet), make_policies(args.policies)
    vm_fleet, ports = on_hypervisor(hosts_fleet, args.vms)
    compile_fleet(hosts_fleet, drawn)  # warm the name caches for both modes alike
    results = Table()
    host_mode, host_all = repeated(lambda: compile_fleet(hosts_fleet, drawn), args.repeat)
    results.add("whole fleet, the %d VMs as hosts of their own (host mode)" % args.vms, host_mode, floor=host_mode)
    vm_mode, vm_all = repeated(lambda: compile_fleet(vm_fleet, drawn, port_bridges=ports), args.repeat)
    results.add("whole fleet, the %d VMs on %s's bridge ports (bridge mode)" % (args.vms, HYPERVISOR), vm_mode,
                floor=host_mode)
    alone, _state = repeated(lambda: compile_fleet(vm_fleet, drawn, hosts=[HYPERVISOR], port_bridges=ports),
                             args.repeat)
    results.add("%s alone (hosts=[%s], as a --limit run compiles)" % (HYPERVISOR, HYPERVISOR), alone, floor=host_mode)
    print("Fleet of %d workloads, %d policies, %d VMs on %s (%d bridges); each row the median of %d compiles, "
          "ratios are CPU time to host mode's whole-fleet compile\n"
          % (args.fleet, args.policies, args.vms, HYPERVISOR, BRIDGES, args.repeat))
    print(results.markdown("CPU ratio to host mode"))
    print()
    print(state_figures(vm_all[HYPERVISOR], host_all, args.vms))


if __name__ == "__main__":
    main()
