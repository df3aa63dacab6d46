# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bench-only callback: CPU time (user+sys of ansible-playbook and its reaped workers, with their
modules) between task starts, and from a run_once task's result (its worker reaped) to the next
start, written as JSON to $NETPOL_BENCH_CPU_LOG at the end of the run."""

from __future__ import annotations

DOCUMENTATION = r"""
name: cpu_per_task
type: aggregate
short_description: CPU time per task, for bench/fleet_bench.py
description: Records the process tree's CPU time at every task start; bench use only.
requirements:
  - enable in callbacks_enabled; NETPOL_BENCH_CPU_LOG names the output file
"""

import json
import multiprocessing
import os
import resource
import time

from ansible.plugins.callback import CallbackBase


def _cpu():
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "cpu_per_task"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.marks = [("start-up", _cpu(), time.perf_counter())]

    def v2_playbook_on_task_start(self, task, is_conditional):
        self.marks.append((task.get_name(), _cpu(), time.perf_counter()))

    def v2_runner_on_ok(self, result):
        """A run_once task's result: its worker reaped (and so counted) now, not one task late. What follows
        (registering the result for every host, the next per-host tasks) goes to a row of its own."""
        if getattr(result, "task", None) is not None and result.task.run_once:
            deadline = time.perf_counter() + 5
            while multiprocessing.active_children() and time.perf_counter() < deadline:  # reaps what exited
                time.sleep(0.001)
            self.marks.append(("after: %s" % result.task.get_name(), _cpu(), time.perf_counter()))

    def v2_playbook_on_stats(self, stats):
        self.marks.append(("end", _cpu(), time.perf_counter()))
        rows = [{"task": name, "cpu": round(nxt[1] - cpu, 3), "wall": round(nxt[2] - wall, 3)}
                for (name, cpu, wall), nxt in zip(self.marks, self.marks[1:])]
        path = os.environ.get("NETPOL_BENCH_CPU_LOG")
        if path:
            with open(path, "w", encoding="utf-8") as out:
                json.dump(rows, out)
