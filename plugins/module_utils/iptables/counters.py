# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hit counters of the rules in our chains, read from `iptables-save -c` (never zeroed).

Zeroing would change the host (and whatever else reads the counters), so callers read twice
and subtract. Standard library only, Python 3.9: the netpol_counters module imports it.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List

from ansible_collections.netpol.fleet.plugins.module_utils.tools import run

SAVE_TOOLS = {4: "iptables-save", 6: "ip6tables-save"}
_COUNTED_RULE = re.compile(r"^\[(\d+):(\d+)\] -A (\S+) ?(.*)$")


def parse_counted_save(text: str, family: int, prefix: str) -> List[Dict[str, Any]]:
    """Rules of the chains whose name starts with prefix, in order, with packet and byte counts."""
    rules: List[Dict[str, Any]] = []
    index: Dict[str, int] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        found = _COUNTED_RULE.match(line)
        if not found or not found.group(3).startswith(prefix):
            continue
        chain = found.group(3)
        index[chain] = index.get(chain, 0) + 1
        rules.append({"family": family, "table": table, "chain": chain, "index": index[chain],
                      "rule": found.group(4).strip(), "packets": int(found.group(1)), "bytes": int(found.group(2))})
    return rules


def read(module, family: int, table: str, prefix: str) -> List[Dict[str, Any]]:
    find = getattr(module, "get_bin_path", None)
    tool = find(SAVE_TOOLS[family], required=True) if find else SAVE_TOOLS[family]
    out = run(module, [tool, "-c", "-t", table])[1]
    return parse_counted_save(out, family, prefix)
