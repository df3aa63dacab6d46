#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fleet benchmark: playbooks/site.yml through ansible-playbook on lab fleets of N netns hosts.

For each N (8, 32, 64 by default) a lab of N network-namespace hosts (prefix npfbench) is built
with playbooks/lab.yml; every host gives netpol_addresses (so no facts are gathered), four apps in
two namespaces, and a policy set of a default deny plus allowances by pod and namespace selector.
Then, in one run:

  trivial   a two-task play (ansible.builtin.ping, ansible.builtin.stat) over the same hosts
  cold      site.yml on the fresh hosts (nothing of ours there yet)
  no-op     site.yml again; kernel writes counted by PATH shims that log every write of the tools

Each row: wall time, CPU time of the whole process tree (ansible-playbook, its workers, the modules
and tools), the load average, and per-host CPU; ratios are on CPU against the trivial play over the
same hosts. Per-task CPU (bench/callback_plugins/cpu_per_task.py) is printed below each table.

Run as root from the repository root:  .venv/bin/python bench/fleet_bench.py [--sizes 8 32 64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from measure import Sample, Table, measured  # noqa: E402  pylint: disable=wrong-import-position

BIN = Path(sys.executable).parent
WRITE_TOOLS = ("iptables-restore", "ip6tables-restore", "ipset", "iptables", "ip6tables")
TRIVIAL = [{"hosts": "all", "gather_facts": False,
            "tasks": [{"name": "ping", "ansible.builtin.ping": {}}, {"name": "stat", "ansible.builtin.stat": {"path": "/"}}]}]


def policy(name: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": "shop"}, "spec": spec}


POLICIES = [
    policy("deny-all", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
    policy("web-from-all", {"podSelector": {"matchLabels": {"app": "web"}},
                            "ingress": [{"ports": [{"port": 80}]}]}),
    policy("api-from-web", {"podSelector": {"matchLabels": {"app": "api"}},
                            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                                         "ports": [{"port": "http"}]}]}),
    policy("db-from-api", {"podSelector": {"matchLabels": {"app": "db"}},
                           "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}},
                                                 {"namespaceSelector": {"matchLabels": {"team": "ops"}}}],
                                        "ports": [{"port": 5432}]}]}),
    policy("egress-in-shop", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"podSelector": {}}]}]}),
]
APPS = ("web", "api", "db", "cli")


def inventory(directory: Path, prefix: str, size: int) -> Path:
    hosts = {}
    for i in range(1, size + 1):
        hosts["%sh%d" % (prefix, i)] = {
            "netpol_namespace": "shop" if i % 4 else "ops", "netpol_labels": {"app": APPS[i % len(APPS)]},
            "netpol_addresses": ["10.81.%d.%d/16" % (i // 250, i % 250 + 1), "fd81::%x/64" % i],
            "netpol_ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}
    data = {"all": {"vars": {"lab_prefix": prefix, "netpol_policies": POLICIES,
                             "netpol_namespaces": {"shop": {"labels": {"team": "dev"}}, "ops": {"labels": {"team": "ops"}}}},
                    "children": {"lab": {"vars": {"ansible_connection": "netpol.fleet.netns",
                                                  "ansible_python_interpreter": sys.executable},
                                         "hosts": hosts}}}}
    path = directory / "hosts.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def shims(directory: Path, log: Path) -> Path:
    directory.mkdir(exist_ok=True)
    for tool in WRITE_TOOLS:
        shim = directory / tool
        if tool == "ipset":
            line = 'case "$1" in list|save|-n|-t|"") ;; *) echo "%s $*" >> %s ;; esac\n' % (tool, log)
        elif tool.endswith("-restore"):
            line = 'case " $* " in *" --test "*) ;; *) echo "%s $*" >> %s ;; esac\n' % (tool, log)
        else:
            line = 'case " $* " in *" -S "*|*" -L "*|*" -C "*) ;; *) echo "%s $*" >> %s ;; esac\n' % (tool, log)
        shim.write_text("#!/bin/sh\n" + line + 'exec /usr/sbin/%s "$@"\n' % tool)
        shim.chmod(0o755)
    return directory


class Runner:
    def __init__(self, work: Path, inventory_path: Path):
        self.work, self.inventory = work, inventory_path
        self.writes_log = work / "writes.log"
        self.env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
                        ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collection"), ANSIBLE_NOCOLOR="1",
                        ANSIBLE_CALLBACK_PLUGINS=str(ROOT / "bench" / "callback_plugins"),
                        ANSIBLE_CALLBACKS_ENABLED="cpu_per_task",
                        PATH="%s:%s:%s" % (shims(work / "shims", self.writes_log), BIN, os.environ["PATH"]))

    def play(self, playbook: str, *args: str) -> Tuple[Sample, List[dict]]:
        log = self.work / "tasks.json"
        env = dict(self.env, NETPOL_BENCH_CPU_LOG=str(log))
        argv = [str(BIN / "ansible-playbook"), "-i", str(self.inventory), playbook, *args]
        taken, done = measured(lambda: subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                                                      check=False))
        if done.returncode:
            raise RuntimeError(done.stdout[-4000:] + done.stderr[-2000:])
        return taken, json.loads(log.read_text())

    def writes(self) -> int:
        if not self.writes_log.exists():
            return 0
        count = len(self.writes_log.read_text().splitlines())
        self.writes_log.unlink()
        return count


def per_task(rows: List[dict], hosts: int) -> str:
    return "; ".join("%s %.2f s (%.3f s/host)" % (r["task"], r["cpu"], r["cpu"] / hosts) for r in rows if r["cpu"] >= 0.005)


def bench_size(size: int, work: Path) -> Tuple[Table, List[str]]:
    prefix = "npfb%d-" % size
    inventory_path = inventory(work, prefix, size)
    runner = Runner(work, inventory_path)
    trivial_play = work / "trivial.yml"
    trivial_play.write_text(yaml.safe_dump(TRIVIAL))
    table, notes = Table(), []
    runner.play(str(ROOT / "playbooks" / "lab.yml"))
    try:
        runner.writes()
        trivial, trivial_tasks = runner.play(str(trivial_play))
        table.add("%d hosts: ping + stat play" % size, trivial, " (%.3f s/host)" % (trivial.cpu / size))
        notes.append("%d hosts, ping + stat, per task: %s" % (size, per_task(trivial_tasks, size)))
        runner.writes()
        site = str(ROOT / "playbooks" / "site.yml")
        cold, cold_tasks = runner.play(site, "-e", "netpol_report=false")
        table.add("%d hosts: site.yml cold" % size, cold, " (%.3f s/host, %d kernel writes)"
                  % (cold.cpu / size, runner.writes()), floor=trivial)
        notes.append("%d hosts, site.yml cold, per task: %s" % (size, per_task(cold_tasks, size)))
        noop, noop_tasks = runner.play(site, "-e", "netpol_report=false")
        table.add("%d hosts: site.yml no-op" % size, noop, " (%.3f s/host, %d kernel writes)"
                  % (noop.cpu / size, runner.writes()), floor=trivial)
        notes.append("%d hosts, site.yml no-op, per task: %s" % (size, per_task(noop_tasks, size)))
    finally:
        runner.play(str(ROOT / "playbooks" / "lab.yml"), "-e", "state=absent")
    return table, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 32, 64])
    args = parser.parse_args()
    tables: Dict[int, Tuple[Table, List[str]]] = {}
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="npfbench") as tmp:
            tables[size] = bench_size(size, Path(tmp))
    print("Ratios: CPU time against the ping + stat play over the same hosts, in the same run.\n")
    for size, (table, notes) in tables.items():
        print(table.markdown("CPU ratio to ping + stat"))
        print()
        for note in notes:
            print("- " + note)
        print()


if __name__ == "__main__":
    main()
