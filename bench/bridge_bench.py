#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compile figures for bridge mode: one hypervisor with 200 VMs in a fleet of compile_bench's shape.

    .venv/bin/python bench/bridge_bench.py [--vms 200] [--fleet 2000] [--policies 1000] [--repeat 5]
    .venv/bin/python bench/bridge_bench.py --dispatch [--connections 3000] [--rounds 5]     (root)

The same fleet twice, in one process: the first --vms workloads as host-mode hosts of their own,
then as VMs on the bridge ports of one hypervisor. Every row is the median of --repeat compiles:
wall time, CPU time (user+sys of the process tree, bench/measure.py) and the load average, the
ratio on CPU to host mode's whole-fleet compile of the same run. Then the hypervisor's state: its
chains and rules per table, its sets, and the longest list of rules a new bridged packet walks before
its VMs' chains (the dispatch: NETPOL-BRIDGE, two rules per port, then NETPOL-BR-EGRESS and
NETPOL-BR-INGRESS, one each).

--dispatch measures what the linear NETPOL-BRIDGE list costs bridged TCP: a hypervisor namespace
with one bridge (nf_call_iptables on) carrying the 200 ports, two of them VM namespaces, a client and
a server. FORWARD is, in turn: empty; one conntrack ACCEPT rule; the compiled NETPOL-BRIDGE chain
verbatim (its 400 rules, jumping to a check chain that accepts) with the two VMs on the ports it
matches first, then on the ports it matches last. The client opens connections one after the other
(bench/dataplane_bench.py's loops); rows are the median of interleaved rounds, ratios within the run.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import uuid
from typing import Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "collection"))

from compile_bench import make_fleet, make_policies  # noqa: E402
from measure import Sample, Table, measured, median  # noqa: E402

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


class Hypervisor:
    """A namespace with bridge br0 and the given ports; two of them lead to VM namespaces, a client
    (10.99.0.1) and a server (10.99.0.2)."""

    def __init__(self, ports: List[str], client_port: str, server_port: str):
        token = uuid.uuid4().hex[:6]
        self.ns = "npbbench-%s-hv" % token
        self.client_port, self.server_port = client_port, server_port
        self.vms = {client_port: "npbbench-%s-client" % token, server_port: "npbbench-%s-server" % token}
        self.ports = ports

    def __enter__(self) -> "Hypervisor":
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        batch = ["link add br0 type bridge", "link set br0 up"]
        for index, port in enumerate(self.ports):
            batch += ["link add %s type veth peer name peer%d" % (port, index), "link set %s master br0 up" % port]
        subprocess.run(["ip", "-n", self.ns, "-batch", "-"], input="\n".join(batch) + "\n", text=True, check=True)
        sh(self.ns, "echo 1 > /sys/class/net/br0/bridge/nf_call_iptables")
        for number, (port, vm) in enumerate(self.vms.items(), 1):
            subprocess.run(["ip", "netns", "add", vm], check=True)
            peer = "peer%d" % self.ports.index(port)
            sh(self.ns, "ip link set %s netns %s" % (peer, vm))
            sh(vm, "ip link set lo up && ip link set %s name eth0 && ip addr add 10.99.0.%d/24 dev eth0 && "
                   "ip link set eth0 up" % (peer, number))
        return self

    def __exit__(self, *exc) -> None:
        for ns in [self.ns] + list(self.vms.values()):
            subprocess.run(["ip", "netns", "delete", ns], check=False)

    def forward(self, rules: List[str], chains: Dict[str, List[str]]) -> None:
        text = ["*filter"] + [":%s - [0:0]" % name for name in chains] + ["-F FORWARD"]
        text += ["-A FORWARD %s" % rule for rule in rules]
        text += ["-A %s %s" % (name, rule) for name, chain in chains.items() for rule in chain] + ["COMMIT"]
        sh(self.ns, "iptables-restore --noflush", "\n".join(text) + "\n")

    def connections(self, count: int) -> Sample:
        from dataplane_bench import CLIENT_CODE, SERVER_CODE  # pylint: disable=import-outside-toplevel
        client, server = self.vms[self.client_port], self.vms[self.server_port]
        listening = subprocess.Popen(["ip", "netns", "exec", server, sys.executable, "-c", SERVER_CODE, str(count),
                                      "10.99.0.2"], stdout=subprocess.PIPE, text=True)
        assert listening.stdout is not None and listening.stdout.readline().strip() == "up"
        out = subprocess.run(["ip", "netns", "exec", client, sys.executable, "-c", CLIENT_CODE, str(count), "10.99.0.2"],
                             check=True, capture_output=True, text=True).stdout.split()
        server_cpu = float(listening.stdout.readline())
        listening.wait(timeout=60)
        return Sample(float(out[0]), float(out[1]) + server_cpu, os.getloadavg()[0])


def sh(ns: str, command: str, data: Optional[str] = None) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", command], input=data, capture_output=True, text=True,
                          check=True).stdout


def dispatch_ports(chain) -> List[str]:
    """The ports of NETPOL-BRIDGE in the order its rules match them."""
    ports: List[str] = []
    for rule in chain.rules:
        port = rule.split("--physdev-in ")[-1].split("--physdev-out ")[-1].split()[0]
        if port not in ports:
            ports.append(port)
    return ports


def dispatch_bench(hv0, connections: int, rounds: int) -> None:
    bridge_chain = next(c for c in hv0.table("ipv4").chains if c.name == "NETPOL-BRIDGE")
    ports = dispatch_ports(bridge_chain)
    check = {"NETPOL-BR-CHECK": ["-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", "-j ACCEPT"]}
    dispatch = dict(check, **{"NETPOL-BRIDGE": list(bridge_chain.rules)})
    configs = {
        "FORWARD empty": ([], {}),
        "conntrack alone": (["-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"], {}),
        "NETPOL-BRIDGE, the VMs' ports matched first": (["-m physdev --physdev-is-bridged -j NETPOL-BRIDGE"], dispatch),
        "NETPOL-BRIDGE, the VMs' ports matched last": (["-m physdev --physdev-is-bridged -j NETPOL-BRIDGE"], dispatch),
    }
    placements = {name: (ports[-2], ports[-1]) if "last" in name else (ports[0], ports[1]) for name in configs}
    samples: Dict[str, List[Sample]] = {name: [] for name in configs}
    for _round in range(rounds):
        for name, (rules, chains) in configs.items():
            client, server = placements[name]
            with Hypervisor(ports, client, server) as hv:
                hv.forward(rules, chains)
                hv.connections(50)  # warm: ARP, conntrack, the first accept
                samples[name].append(hv.connections(connections))
            print("  %s: %.0f conn/s" % (name, connections / samples[name][-1].wall), file=sys.stderr, flush=True)
    table = Table()
    floor = median(samples["FORWARD empty"])
    for name, runs in samples.items():
        taken = median(runs)
        table.add("%s: %.0f conn/s" % (name, connections / taken.wall), taken, floor=floor)
    print("\nBridged TCP through hv0's NETPOL-BRIDGE (%d rules, %d ports); %d connections per run, median of %d "
          "interleaved rounds; CPU is the client's and server's loops\n" % (len(bridge_chain.rules), len(ports),
                                                                           connections, rounds))
    print(table.markdown("CPU ratio to FORWARD empty"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=200)
    parser.add_argument("--fleet", type=int, default=2000)
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5, help="compiles per row (median)")
    parser.add_argument("--dispatch", action="store_true", help="measure bridged TCP through the dispatch (root)")
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    hosts_fleet, drawn = make_fleet(args.fleet), make_policies(args.policies)
    vm_fleet, ports = on_hypervisor(hosts_fleet, args.vms)
    if args.dispatch:
        state = compile_fleet(vm_fleet, drawn, hosts=[HYPERVISOR], port_bridges=ports)[HYPERVISOR]
        dispatch_bench(state, args.connections, args.rounds)
        return
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
