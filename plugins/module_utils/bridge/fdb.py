# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which bridge port a MAC is behind, from the bridge forwarding database (`bridge -j fdb show`).

Why the FDB and not the port devices: with KubeVirt's bridge binding the VM's MAC is the guest
NIC's, behind a tap (or the veth of the virt-launcher pod) whose own MAC is another one, so no
port device carries it; the bridge learns it on the port the VM's frames arrive on. Entries the
bridge learned (or an admin added as static) count; `permanent` ones are the ports' own MACs and
`self` ones belong to a device's own table, not to the bridge. A MAC the bridge has not seen
within its ageing time (300 s by default) is not there: the caller reports it, never guesses.
Standard library only, Python 3.9: runs on managed hosts.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Sequence

FDB_COMMAND = ("bridge", "-j", "fdb", "show")


def learned_ports(entries: Sequence[Any]) -> Dict[str, List[str]]:
    """MAC (lower case) -> the bridge ports it was learned on (usually one), from the decoded JSON."""
    found: Dict[str, List[str]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("master") or "self" in (entry.get("flags") or ()):
            continue
        if entry.get("state") == "permanent" or not entry.get("mac") or not entry.get("ifname"):
            continue
        ports = found.setdefault(str(entry["mac"]).lower(), [])
        if entry["ifname"] not in ports:
            ports.append(str(entry["ifname"]))
    return {mac: sorted(ports) for mac, ports in sorted(found.items())}


def parse_fdb(text: str) -> Dict[str, List[str]]:
    """learned_ports of `bridge -j fdb show` output (empty output: no bridge, no entry)."""
    return learned_ports(json.loads(text) if text.strip() else [])
