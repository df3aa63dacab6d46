# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The VLANs of the ports of VLAN-aware bridges (vlan_filtering 1), from `bridge -j vlan show`.

A VM on such a bridge is on the VLAN its port gives its untagged frames (the PVID) and sends back
untagged (egress untagged): an access port has exactly one VLAN, that one. A port with more VLANs,
or tagged ones, is a trunk: the VM itself would choose its VLAN by tagging.
Standard library only, Python 3.9: runs on managed hosts.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Sequence

VLAN_COMMAND = ("bridge", "-j", "vlan", "show")

PortVlans = Dict[str, Any]  # {"pvid": int or None, "untagged": [int], "tagged": [int]}


def _vids(entry: Mapping[str, Any]) -> List[int]:
    """One entry's VLAN ids (iproute2 prints a range as vlan .. vlanEnd)."""
    first = int(entry["vlan"])
    return list(range(first, int(entry.get("vlanEnd", first)) + 1))


def port_vlans(entries: Sequence[Any], ports: Sequence[str]) -> Dict[str, PortVlans]:
    """Port -> its PVID and its untagged and tagged VLANs, for each of ports found in the decoded JSON."""
    found: Dict[str, PortVlans] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("ifname") not in ports:
            continue
        vlans: PortVlans = {"pvid": None, "untagged": [], "tagged": []}
        for item in entry.get("vlans") or ():
            flags = item.get("flags") or ()
            for vid in _vids(item):
                vlans["untagged" if "Egress Untagged" in flags else "tagged"].append(vid)
                if "PVID" in flags:
                    vlans["pvid"] = vid
        found[str(entry["ifname"])] = vlans
    return found


def parse_vlans(text: str, ports: Sequence[str]) -> Dict[str, PortVlans]:
    """port_vlans of `bridge -j vlan show` output (empty output: no VLAN-aware port)."""
    return port_vlans(json.loads(text) if text.strip() else [], ports)


def access_vlan(vlans: Optional[Mapping[str, Any]]) -> Optional[int]:
    """The VLAN of an access port (exactly one VLAN, its PVID, egress untagged); None for anything else."""
    if not vlans or vlans.get("tagged") or list(vlans.get("untagged") or ()) != [vlans.get("pvid")]:
        return None
    return int(vlans["pvid"])


def describe(vlans: Optional[Mapping[str, Any]]) -> str:
    """What the port carries, for messages: 'access port of VLAN 10', 'PVID 10, untagged 10, tagged 20, 30'."""
    if not vlans:
        return "no VLAN"
    vlan = access_vlan(vlans)
    if vlan is not None:
        return "access port of VLAN %d" % vlan
    parts = ["PVID %s" % (vlans.get("pvid") if vlans.get("pvid") is not None else "none")]
    parts += ["%s %s" % (kind, ", ".join(str(v) for v in vlans[kind])) for kind in ("untagged", "tagged") if vlans.get(kind)]
    return ", ".join(parts)
