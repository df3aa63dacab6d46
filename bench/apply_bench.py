#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Apply benchmark: the netpol.fleet modules against the raw tools, measured in one run.

A host state of CHAINS policy chains (each entered from a dispatch chain, each matching its own
set) and MEMBERS set members in total is applied, each time into a fresh network namespace:

  raw       `ipset restore` + `iptables-restore --noflush` of the same text (the floor)
  host      ansible-playbook running netpol.fleet.netpol_host once (the sets as that same text,
            the chains as its `tables`), as the enforce role does: one transaction
  modules   ansible-playbook running netpol.fleet.ipset (`content`) then netpol.fleet.netpol_chain,
            the standalone modules
  backends  the same two modules' work called in process, from the same arguments (Ansible's own
            cost removed)
  no-op     the playbook again on the applied host; kernel writes counted by tracing shims
  builtin   ansible.builtin.iptables, one module invocation per rule (loop), sets made raw first

Every row reports wall time, CPU time (user+sys of the process tree) and the load average; ratios
are taken on CPU time, within one run (bench/measure.py).

Run as root from the repository root:  .venv/bin/python bench/apply_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "collection"))
sys.path.insert(0, str(ROOT / "bench"))

# pylint: disable=wrong-import-position
from ansible_collections.netpol.fleet.plugins.module_utils.iptables import chains
from ansible_collections.netpol.fleet.plugins.module_utils.ipset import sets as ipsets# noqa: E402
from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import (  # noqa: E402
    Chain,
    IpSet,
    Jump,
    SetMember,
    Table,
)
from ansible_collections.netpol.fleet.plugins.module_utils.ipset.text import render_restore as sets_text  # noqa: E402
from ansible_collections.netpol.fleet.plugins.module_utils.iptables.text import render_restore  # noqa: E402
from ansible_collections.netpol.fleet.plugins.module_utils.transaction import host as transaction  # noqa: E402
from measure import Sample, Table as Results, measured, median, sample  # noqa: E402

PYTHON = sys.executable
BIN = Path(PYTHON).parent
WRITE_VERBS = {"restore", "create", "add", "del", "destroy", "swap", "rename", "flush", "-N", "-A", "-I", "-D", "-X", "-F"}


class Bench:
    """The host state in the three shapes the contenders need."""

    def __init__(self, chain_count: int, member_count: int):
        per_set = member_count // chain_count
        self.sets = [
            IpSet(
                "netpol4-s%03d" % i,
                "hash:net",
                "inet",
                tuple(SetMember(address(i * per_set + j)) for j in range(per_set)),
            )
            for i in range(chain_count)
        ]
        policy = ["NETPOL-P%03d" % i for i in range(chain_count)]
        # ansible.builtin.iptables creates a chain only in a task without rule arguments.
        self.builtin_rules: List[Dict[str, Any]] = [dict(chain=n) for n in policy + ["NETPOL-DISPATCH"]]
        table_chains = []
        for i, name in enumerate(policy):
            allow = dict(protocol="tcp", destination_port="5432", match_set=self.sets[i].name,
                         match_set_flags="src", comment="ns%03d/pol ingress" % i, jump="RETURN")
            self.builtin_rules += [dict(chain=name, **allow), dict(chain=name, jump="DROP")]
            table_chains.append(Chain(name, (
                '-p tcp -m tcp --dport 5432 -m set --match-set %s src -m comment --comment "ns%03d/pol ingress" -j RETURN'
                % (self.sets[i].name, i),
                "-j DROP",
            )))
        dispatch = tuple("-d 10.200.%d.%d/32 -j %s" % (i // 250, i % 250 + 1, name) for i, name in enumerate(policy))
        self.builtin_rules += [
            dict(chain="NETPOL-DISPATCH", destination="10.200.%d.%d/32" % (i // 250, i % 250 + 1), jump=name)
            for i, name in enumerate(policy)
        ]
        self.builtin_rules.append(dict(chain="INPUT", jump="NETPOL-DISPATCH", action="insert", rule_num="1"))
        self.table = Table("ipv4", "filter", tuple(table_chains) + (Chain("NETPOL-DISPATCH", dispatch),),
                           (Jump("INPUT", "NETPOL-DISPATCH"),))
        self.rule_count = sum(len(c.rules) for c in self.table.chains) + len(self.table.jumps)
        self.member_count = per_set * chain_count
        self.content = sets_text(self.sets)  # what raw `ipset restore` reads, and the module's `content`

    def module_vars(self) -> Dict[str, Any]:
        """Separate variables, so that a task templates only what it passes on."""
        return {
            "bench_content": self.content,
            "bench_sets": [
                {"name": s.name, "type": s.type, "family": s.family, "members": [m.entry for m in s.members]}
                for s in self.sets
            ],
            "bench_chains": [{"name": c.name, "rules": list(c.rules)} for c in self.table.chains],
            "bench_jumps": [{"chain": j.chain, "target": j.target} for j in self.table.jumps],
        }


def address(index: int) -> str:
    return "10.%d.%d.%d" % (index >> 16, (index >> 8) & 255, index & 255)


class Namespace:
    """A fresh network namespace (prefix npn) that also serves as the backends' `module`."""

    def __init__(self):
        self.name = "npnbench-%s" % uuid.uuid4().hex[:6]

    def __enter__(self) -> "Namespace":
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], check=False)

    def run_command(self, args: Sequence[str], data: Optional[str] = None, **kwargs) -> Tuple[int, str, str]:
        done = subprocess.run(["ip", "netns", "exec", self.name] + list(args), input=data,
                              capture_output=True, text=True, check=False)
        return done.returncode, done.stdout, done.stderr

    def tool(self, argv: Sequence[str], data: Optional[str] = None) -> str:
        rc, out, err = self.run_command(argv, data)
        if rc:
            raise RuntimeError("%s: %s" % (" ".join(argv), err))
        return out


def raw_apply(ns: Namespace, bench: Bench) -> None:
    ns.tool(["ipset", "restore"], sets_text(bench.sets))
    ns.tool(["iptables-restore", "--noflush", "--wait"], render_restore(bench.table))


def sets_backend(ns: Namespace, bench: Bench) -> int:
    """netpol.fleet.ipset's work in process, from its `content` argument; returns how many restores
    it ran (0 on a no-op)."""
    desired = ipsets.sets_from_text(bench.content)
    actual, references = ipsets.read_state(ns, "ipset", [s.name for s in desired])
    set_plan = ipsets.plan(desired, actual, references)
    if set_plan.changed:
        ipsets.apply(ns, "ipset", set_plan)
    return int(set_plan.changed)


def chains_backend(ns: Namespace, bench: Bench) -> int:
    """netpol.fleet.netpol_chain's backend in process; returns how many restores it ran."""
    return int(chains.converge(ns, [bench.table], "NETPOL-")[0].plan.changed)


def host_transaction(ns: Namespace, bench: Bench) -> int:
    """netpol.fleet.netpol_host's transaction in process (not detached); 1 when it wrote anything."""
    desired = transaction.Desired(ipsets.sets_from_text(bench.content), [bench.table])
    planned = transaction.prepare(ns, "ipset", desired, "NETPOL-", ("netpol4-", "netpol6-"))
    if planned.changed:
        planned.run()
    return int(planned.changed)


MODULE_VARS = ("bench_content", "bench_chains", "bench_jumps")  # also loaded by the start-up rows
LIST_VARS = ("bench_sets", "bench_chains", "bench_jumps")


class Playbooks:
    """ansible-playbook runs inside a namespace, against a vars file holding the host state."""

    def __init__(self, work: Path, bench: Bench):
        self.work = work
        self.variables = dict(bench.module_vars(), rules=bench.builtin_rules)
        self.shims = self._shims()

    def _shims(self) -> Path:
        """PATH shims that log every call of the kernel tools, to count writes on a no-op run."""
        shims = self.work / "shims"
        shims.mkdir(exist_ok=True)
        for tool in ("ipset", "iptables", "iptables-restore", "ip6tables-restore"):
            shim = shims / tool
            shim.write_text('#!/bin/sh\necho "%s $*" >> %s\nexec /usr/sbin/%s "$@"\n' % (tool, self.work / "calls", tool))
            shim.chmod(0o755)
        return shims

    def run(self, ns: Namespace, tasks: List[Dict[str, Any]], names: Sequence[str] = MODULE_VARS) -> Sample:
        """Run the tasks with the variables `names` in a vars file: only those, because ansible-core 2.19
        goes over a play's vars files again for every task, so unused bulk would slow every task."""
        variables = self.work / ("vars-%s.json" % "-".join(names))
        if not variables.exists():
            variables.write_text(json.dumps({name: self.variables[name] for name in names}))
        playbook = self.work / "play.json"  # JSON is YAML; saves a dependency on the dump side
        playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False,
                                         "vars_files": [str(variables)], "tasks": tasks}]))
        env = dict(os.environ, PATH="%s:%s" % (self.shims, os.environ["PATH"]), ANSIBLE_NOCOLOR="1")
        argv = ["ip", "netns", "exec", ns.name, str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                "-e", "ansible_python_interpreter=%s" % PYTHON, str(playbook)]
        taken, done = measured(lambda: subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                                                      check=False))
        if done.returncode:
            raise RuntimeError(done.stdout[-3000:] + done.stderr[-3000:])
        return taken

    def writes(self) -> int:
        calls = self.work / "calls"
        if not calls.exists():
            return 0
        lines = calls.read_text().splitlines()
        calls.unlink()
        return sum(1 for line in lines if _is_write(line.split()))


def _is_write(words: List[str]) -> bool:
    tool, args = words[0], words[1:]
    if tool.endswith("-restore"):
        return "--test" not in args
    return bool(args) and (args[0] in WRITE_VERBS or any(a in WRITE_VERBS for a in args[:2]))


CHAIN_TASKS = [{"netpol.fleet.netpol_chain": {"chains": "{{ bench_chains }}", "jumps": "{{ bench_jumps }}"}}]
MODULE_TASKS = [{"netpol.fleet.ipset": {"content": "{{ bench_content }}"}}] + CHAIN_TASKS
HOST_TASKS = [{"netpol.fleet.netpol_host": {"set_content": "{{ bench_content }}", "tables": [
    {"family": "ipv4", "name": "filter", "chains": "{{ bench_chains }}", "jumps": "{{ bench_jumps }}"}]}}]
LIST_TASKS = [{"netpol.fleet.ipset": {"sets": "{{ bench_sets }}"}}] + CHAIN_TASKS  # members one value each
BUILTIN_TASKS = [{"ansible.builtin.iptables": dict({k: "{{ item.%s | default(omit) }}" % k for k in (
    "chain", "protocol", "destination_port", "match_set", "match_set_flags", "comment", "jump",
    "destination", "action", "rule_num")}, chain_management=True), "loop": "{{ rules }}"}]
EMPTY_TASKS = [{"ansible.builtin.meta": "noop"}]
TRIVIAL_TASKS = [{"ansible.builtin.ping": {}}, {"ansible.builtin.stat": {"path": "/"}}]  # any two module tasks


def median_fresh(action: Callable[[Namespace], Any], repeat: int) -> Sample:
    """The median wall and CPU time of `action`, each time in a fresh namespace."""
    return median([fresh(action) for attempt in range(repeat)])


def fresh(action: Callable[[Namespace], Any]) -> Sample:
    with Namespace() as ns:
        return sample(lambda: action(ns))


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def noop(ns: Namespace, action: Callable[[], Any]) -> Tuple[Sample, Any]:
    """Measure a re-run on an already applied namespace, and what it returned."""
    return measured(action)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chains", type=int, default=200)
    parser.add_argument("--members", type=int, default=100000)
    parser.add_argument("--repeat", type=int, default=3, help="fresh-namespace repetitions (median)")
    parser.add_argument("--quick", action="store_true", help="20 chains, 10,000 members, 1 repetition")
    parser.add_argument("--skip-builtin", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.chains, args.members, args.repeat = 20, 10000, 1
    bench = Bench(args.chains, args.members)
    res = Results()
    with tempfile.TemporaryDirectory(prefix="npnbench") as tmp:
        plays = Playbooks(Path(tmp), bench)
        raw = res.add("apply: raw `ipset restore` + `iptables-restore` (floor)",
                      median_fresh(lambda ns: raw_apply(ns, bench), args.repeat))
        with Namespace() as ns:
            ns.tool(["ipset", "restore"], sets_text(bench.sets))
            res.add("apply: raw `iptables-restore` alone", sample(
                lambda: ns.tool(["iptables-restore", "--noflush", "--wait"], render_restore(bench.table))))
        res.add("apply: netpol_host's transaction in process", median_fresh(
            lambda ns: host_transaction(ns, bench), args.repeat), floor=raw)
        res.add("apply: ipset + netpol_chain backends in process", median_fresh(
            lambda ns: (sets_backend(ns, bench), chains_backend(ns, bench)), args.repeat), floor=raw)
        with Namespace() as ns:
            host_transaction(ns, bench)
            taken, restores = noop(ns, lambda: host_transaction(ns, bench))
            res.add("no-op: netpol_host's transaction in process", taken, " (%d writes)" % restores)
        baseline = res.add("ansible-playbook start-up (an empty play)", median_fresh(
            lambda ns: plays.run(ns, EMPTY_TASKS), args.repeat))
        trivial = median_fresh(lambda ns: plays.run(ns, TRIVIAL_TASKS), args.repeat)
        res.add("two trivial builtin tasks (ping, stat) minus start-up: Ansible's floor for any two tasks",
                trivial - baseline)
        hosted = res.add("apply: ansible-playbook, one netpol_host task", median_fresh(
            lambda ns: plays.run(ns, HOST_TASKS), args.repeat), floor=raw)
        res.add("apply: the same minus start-up", hosted - baseline, floor=raw)
        modules = res.add("apply: ansible-playbook, ipset + netpol_chain tasks", median_fresh(
            lambda ns: plays.run(ns, MODULE_TASKS), args.repeat), floor=raw)
        plays.writes()
        with Namespace() as ns:
            plays.run(ns, HOST_TASKS)
            plays.writes()
            taken = plays.run(ns, HOST_TASKS)
            res.add("no-op: ansible-playbook, one netpol_host task", taken, " (%d kernel writes)" % plays.writes())
            res.add("no-op: the netpol_host task minus start-up", taken - baseline)
            taken = plays.run(ns, MODULE_TASKS)
            res.add("no-op: ansible-playbook, ipset + netpol_chain tasks", taken, " (%d kernel writes)" % plays.writes())
        if not args.skip_builtin:
            with Namespace() as ns:
                ns.tool(["ipset", "restore"], sets_text(bench.sets))  # not timed: it has no ipset module
                builtin = plays.run(ns, BUILTIN_TASKS, ("rules",))
            res.add("apply: ansible.builtin.iptables, one invocation per rule/chain (sets made raw, untimed)",
                    builtin, floor=raw)
            res.note("  CPU ratio of builtin to the netpol_host ansible-playbook apply", "%.1fx" % (builtin.cpu / hosted.cpu))
            res.note("  CPU ratio of builtin to the ipset + netpol_chain ansible-playbook apply",
                     "%.1fx" % (builtin.cpu / modules.cpu))
    print("Host state: %d policy chains + 1 dispatch chain, %d rules and jumps, %d sets, %d set members; "
          "apply rows are the median of %d fresh namespace(s); ratios are CPU time to the raw floor's\n"
          % (args.chains, bench.rule_count, len(bench.sets), bench.member_count, args.repeat))
    print(res.markdown("CPU ratio to raw"))


if __name__ == "__main__":
    main()
