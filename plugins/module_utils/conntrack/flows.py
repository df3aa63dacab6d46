# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backend of netpol_conntrack: the kernel's connection tracking entries, and deleting single ones.

`conntrack -L -f FAMILY -o extended` once per family. A deletion names one entry by its whole
original tuple and its zone (`conntrack -D -f ipv4 -p tcp -s A -d B --sport X --dport Y -w Z`),
never a pattern that could take more of the table. Standard library only, Python 3.9.
"""

from __future__ import annotations

import json
from typing import Dict, Iterable, List

from ansible_collections.netpol.fleet.plugins.module_utils.engine.tightening import PROTOCOLS, Flow
from ansible_collections.netpol.fleet.plugins.module_utils.tools import ToolError, run

FAMILY_NAMES = {4: "ipv4", 6: "ipv6"}
NOT_FOUND = 1  # conntrack -D: the entry is gone already (the connection ended meanwhile)


def parse_list(text: str, family: int) -> List[Flow]:
    """The TCP, UDP and SCTP entries of `conntrack -L -o extended` output for one family."""
    flows = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 3 or words[0] != FAMILY_NAMES[family] or words[2].upper() not in PROTOCOLS:
            continue
        fields: Dict[str, str] = {}
        for word in words[3:]:
            key, equals, value = word.partition("=")
            if equals:
                fields.setdefault(key, value)  # the first src/dst/sport/dport are the original tuple
        if all(k in fields for k in ("src", "dst", "sport", "dport")):
            flows.append(Flow(family, words[2].upper(), fields["src"], fields["dst"], int(fields["sport"]),
                              int(fields["dport"]), int(fields.get("zone", "0"))))
    return flows


def read(module, conntrack: str) -> List[Flow]:
    """Every tracked TCP, UDP and SCTP connection, IPv4 then IPv6."""
    flows: List[Flow] = []
    for family, name in FAMILY_NAMES.items():
        flows += parse_list(run(module, [conntrack, "-L", "-f", name, "-o", "extended"])[1], family)
    return flows


def delete_argv(conntrack: str, flow: Flow) -> List[str]:
    return [conntrack, "-D", "-f", FAMILY_NAMES[flow.family], "-p", flow.protocol.lower(), "-s", flow.src,
            "-d", flow.dst, "--sport", str(flow.sport), "--dport", str(flow.dport), "-w", str(flow.zone)]


def delete(module, conntrack: str, flows: Iterable[Flow]) -> None:
    """Delete each entry; one that ended on its own meanwhile is not an error."""
    for flow in flows:
        argv = delete_argv(conntrack, flow)
        rc, out, err = run(module, argv, check=False)
        if rc not in (0, NOT_FOUND):
            raise ToolError(argv, rc, err or out)


def local_addresses(module, ip: str) -> List[str]:
    """The addresses of every interface of the host (`ip -j address show`)."""
    interfaces = json.loads(run(module, [ip, "-j", "address", "show"])[1] or "[]")
    return [a["local"] for i in interfaces for a in i.get("addr_info", ()) if "local" in a]
