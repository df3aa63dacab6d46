#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The compile step of site.yml through ansible-playbook, on inventories of thousands of hosts.

    .venv/bin/python bench/compile_play_bench.py [--sizes 5000 10000] [--policies 1000] [--baseline DIR]

The inventory and the policies are bench/compile_bench.py's synthetic fleet (100 namespaces,
20 apps, dual stack, named ports), written as inventory host variables and NetworkPolicy
manifests. For each size, in one run:

  empty     a play over the inventory with one `meta: noop` task (loading the inventory and the
            variables: what any play over it costs)
  compile   the same play running the enforce role's compile step (tasks_from: compile, run_once,
            registered as netpol_compiled for every host, as site.yml does)

Rows report wall time, CPU time of the process tree (ansible-playbook and its worker: controller
and workers), the peak RSS of ansible-playbook, and the load average; the compile step's own CPU is
the difference of the two rows; and the step's tasks from the first one's start to the compile's
result (its worker reaped: the cpu_per_task callback marks it), without the play's per-host end
(Ansible's linear strategy computes each host's variables and walks every host's list for each
host of a per-host task: quadratic in hosts, and it swings with the load). --compile-only runs no
empty play. With --baseline DIR (another checkout, e.g. `git archive` of an older
commit unpacked there), that checkout's compile play runs too, after the empty play and before this
checkout's, so before and after are measured in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "collection"))
sys.path.insert(0, str(ROOT / "bench"))

# pylint: disable=wrong-import-position
from compile_bench import make_fleet, make_policies  # noqa: E402
from measure import Sample, Table, measured  # noqa: E402

BIN = Path(sys.executable).parent


def selector(sel) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    if sel.match_labels:
        out["matchLabels"] = dict(sel.match_labels)
    if sel.match_expressions:
        out["matchExpressions"] = [{"key": r.key, "operator": r.operator, "values": list(r.values)}
                                   for r in sel.match_expressions]
    return out


def peer(p) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    if p.pod_selector is not None:
        out["podSelector"] = selector(p.pod_selector)
    if p.namespace_selector is not None:
        out["namespaceSelector"] = selector(p.namespace_selector)
    if p.ip_block is not None:
        # compile_bench draws the except independently of the cidr (its engine input is not validated);
        # as a manifest it must be inside the cidr: the cidr's second /24
        inside = p.ip_block.cidr.rsplit(".", 2)[0] + ".1.0/24"
        out["ipBlock"] = {"cidr": p.ip_block.cidr, "except": [inside] if p.ip_block.excepts else []}
    return out


def port(spec) -> Dict[str, Any]:
    out: Dict[str, Any] = {"protocol": spec.protocol, "port": spec.port}
    if spec.end_port is not None:
        out["endPort"] = spec.end_port
    return out


def manifest(policy) -> Dict[str, Any]:
    def rules(items, key):
        return [{key: [peer(p) for p in r.peers], "ports": [port(s) for s in r.ports]} for r in items]
    spec: Dict[str, Any] = {"podSelector": selector(policy.pod_selector), "policyTypes": list(policy.policy_types),
                            "ingress": rules(policy.ingress, "from")}
    if policy.egress:
        spec["egress"] = rules(policy.egress, "to")
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": policy.name, "namespace": policy.namespace}, "spec": spec}


def write_inputs(directory: Path, size: int, policies: int) -> Path:
    fleet = make_fleet(size)
    hosts = {w.host: {"netpol_namespace": w.namespace, "netpol_labels": dict(w.labels),
                      "netpol_addresses": list(w.addresses),
                      "netpol_ports": [{"name": p.name, "port": p.port, "protocol": p.protocol} for p in w.ports]}
             for w in fleet.workloads}
    namespaces = {n.name: {"labels": {k: v for k, v in n.labels if k != "kubernetes.io/metadata.name"}}
                  for n in fleet.namespaces}
    inventory = {"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                                  "netpol_namespaces": namespaces},
                         "hosts": hosts}}
    (directory / "inventory.json").write_text(json.dumps(inventory))  # JSON is YAML, and far faster to read
    (directory / "policies.json").write_text(json.dumps({"netpol_policies": [manifest(p) for p in make_policies(policies)]}))
    return directory


PLAYS = {
    "empty": [{"hosts": "all", "gather_facts": False, "tasks": [{"ansible.builtin.meta": "noop"}]}],
    "compile": [{"hosts": "all", "gather_facts": False, "tasks": [
        {"ansible.builtin.import_role": {"name": "netpol.fleet.enforce", "tasks_from": "compile"}}]}],
}


def run(directory: Path, play: str, root: Path = ROOT) -> Tuple[Sample, List[Dict[str, Any]]]:
    """The play's sample, and the CPU of each of its tasks (bench/callback_plugins/cpu_per_task.py), with the
    collection (and ansible.cfg) of the checkout at root."""
    path = directory / ("%s.json" % play)
    path.write_text(json.dumps(PLAYS[play]))
    tasks = directory / "tasks.json"
    env = dict(os.environ, ANSIBLE_CONFIG=str(root / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(root / "collection"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_CALLBACK_PLUGINS=str(ROOT / "bench" / "callback_plugins"),
               ANSIBLE_CALLBACKS_ENABLED="cpu_per_task", NETPOL_BENCH_CPU_LOG=str(tasks))
    argv = [str(BIN / "ansible-playbook"), "-i", str(directory / "inventory.json"), "-e",
            "@%s" % (directory / "policies.json"), str(path)]
    taken, done = measured(lambda: subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, check=False))
    if done.returncode:
        raise RuntimeError(done.stdout[-3000:] + done.stderr[-2000:])
    return taken, json.loads(tasks.read_text())


def one(size: int, policies: int, play: str, root: Path = ROOT) -> Dict[str, Any]:
    """One play in this (fresh) process, so ru_maxrss of its children is that play's ansible-playbook."""
    with tempfile.TemporaryDirectory(prefix="npcbench") as tmp:
        taken, tasks = run(write_inputs(Path(tmp), size, policies), play, root)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"wall": taken.wall, "cpu": taken.cpu, "load": taken.load, "peak_mib": peak, "tasks": tasks}


COMPILE_TASK = "Compile every host's state once, on the controller"


def step_cpu(tasks: List[Dict[str, Any]]) -> float:
    """CPU from the first task's start to the compile task's result, its worker reaped (the cpu_per_task
    callback's "after:" mark): the step's three tasks, without registering the result for every host and
    without the play's per-host end that follows (Ansible's, quadratic in hosts: it swings with the load)."""
    total = 0.0
    for task in tasks[1:]:
        if task["task"].startswith("after: ") and task["task"].endswith(COMPILE_TASK):
            return total
        total += task["cpu"]
    raise RuntimeError("no result of the compile task in %s" % tasks)


def task_cpu(tasks: List[Dict[str, Any]]) -> float:
    """CPU from the first task's start to the end of the play: the tasks, without loading the inventory."""
    return sum(t["cpu"] for t in tasks if t["task"] != "start-up")


def played(size: int, policies: int, play: str, root: Path) -> Dict[str, Any]:
    """One play in a fresh process (one()), its row's figures."""
    out = subprocess.run([sys.executable, __file__, "--one", str(size), play, "--policies", str(policies),
                          "--root", str(root)], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def contenders(baseline: Optional[Path]) -> List[Tuple[str, Path]]:
    """(label, checkout) of each collection whose compile play runs: a baseline checkout first, if given."""
    return ([("baseline %s" % baseline.name, baseline)] if baseline else []) + [("this checkout", ROOT)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000])
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--baseline", type=Path, help="another checkout (e.g. a worktree of an older commit) whose "
                        "compile play runs too, in the same run, after the empty play and before this checkout's")
    parser.add_argument("--compile-only", action="store_true", help="no empty play: only the compile plays, "
                        "their step's tasks to the compile's result")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(int(args.one[0]), args.policies, args.one[1], args.root)))
        return
    table = Table()
    compile_cpu: Dict[str, List[float]] = {}
    step: Dict[str, List[float]] = {}
    for size in args.sizes:
        empty = None if args.compile_only else played(size, args.policies, "empty", ROOT)
        if empty:
            table.add("%d hosts, %d policies: empty play" % (size, args.policies),
                      Sample(empty["wall"], empty["cpu"], empty["load"]), ", peak RSS %.0f MiB" % empty["peak_mib"])
        for label, root in contenders(args.baseline):
            r = played(size, args.policies, "compile", root)
            table.add("%d hosts, %d policies: compile play, %s" % (size, args.policies, label),
                      Sample(r["wall"], r["cpu"], r["load"]), ", peak RSS %.0f MiB" % r["peak_mib"])
            step.setdefault(label, []).append(step_cpu(r["tasks"]))
            table.note("%d hosts, %s: the compile step's tasks, to the compile's result" % (size, label),
                       "%.2f s" % step[label][-1])
            if empty:
                compile_cpu.setdefault(label, []).append(r["cpu"] - empty["cpu"])
                table.note("%d hosts, %s: the compile step's CPU (compile play minus empty play)" % (size, label),
                           "%.2f s" % compile_cpu[label][-1])
                table.note("%d hosts, %s: the compile step's CPU, its tasks' (compile play's tasks minus the empty "
                           "play's)" % (size, label), "%.2f s" % (task_cpu(r["tasks"]) - task_cpu(empty["tasks"])))
            for task in r["tasks"]:
                table.note("%d hosts, %s: task %s" % (size, label, task["task"]),
                           "%.2f s CPU, %.2f s wall" % (task["cpu"], task["wall"]))
    for what, figures in (("compile step CPU", compile_cpu), ("the step's tasks to the compile's result", step)):
        for label, cpu in figures.items():
            for (small, a), (large, b) in zip(zip(args.sizes, cpu), zip(args.sizes[1:], cpu[1:])):
                table.note("%s: %s, %d hosts against %d" % (label, what, large, small), "%.2fx" % (b / a))
    print(table.markdown("compile step"))


if __name__ == "__main__":
    main()
