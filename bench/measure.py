# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every bench row reports: wall time, CPU time of the process tree, and the load average.

CPU time is user + system of this process and of every child it waited for, together with their own
waited-for children (getrusage RUSAGE_SELF + RUSAGE_CHILDREN): ansible-playbook, its workers, the
modules and the kernel tools they ran. On a shared, loaded machine wall time swings with the load;
CPU time of the same work does not, so ratios are taken on CPU, within one run.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple


@dataclass(frozen=True)
class Sample:
    wall: float
    cpu: float
    load: float  # 1-minute load average when the sample ended

    def __sub__(self, other: "Sample") -> "Sample":
        return Sample(self.wall - other.wall, self.cpu - other.cpu, self.load)


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measured(action: Callable[[], Any]) -> Tuple[Sample, Any]:
    cpu, start = _cpu(), time.perf_counter()
    value = action()
    return Sample(time.perf_counter() - start, _cpu() - cpu, os.getloadavg()[0]), value


def sample(action: Callable[[], Any]) -> Sample:
    return measured(action)[0]


def median(samples: List[Sample]) -> Sample:
    return Sample(statistics.median(s.wall for s in samples), statistics.median(s.cpu for s in samples),
                  samples[-1].load)


class Table:
    """Rows of | run | wall | CPU | load | CPU ratio |, printed as Markdown."""

    def __init__(self):
        self.rows: List[Tuple[str, str, str, str, str]] = []

    def add(self, label: str, measured_sample: Sample, note: str = "", floor: Optional[Sample] = None) -> Sample:
        ratio = "%.2fx" % (measured_sample.cpu / floor.cpu) if floor and floor.cpu > 0 else ""
        row = (label, "%.2f s" % measured_sample.wall, "%.2f s%s" % (measured_sample.cpu, note),
               "%.1f" % measured_sample.load, ratio)
        self.rows.append(row)
        print("  %s: wall %s, CPU %s, load %s %s" % row, file=__import__("sys").stderr, flush=True)
        return measured_sample

    def note(self, label: str, ratio: str) -> None:
        self.rows.append((label, "", "", "", ratio))

    def markdown(self, ratio_title: str = "CPU ratio") -> str:
        lines = ["| run | wall | CPU (user+sys, process tree) | load avg | %s |" % ratio_title, "|---|---|---|---|---|"]
        lines += ["| %s | %s | %s | %s | %s |" % row for row in self.rows]
        return "\n".join(lines)
