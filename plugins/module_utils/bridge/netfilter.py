# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backend of netpol_bridge: which bridge a port is on, and the per-bridge br_netfilter flags.

iptables sees bridged packets only when br_netfilter passes them up: globally
(/proc/sys/net/bridge/bridge-nf-call-ip{,6}tables, which Harvester forces to 0) or per bridge
(/sys/class/net/BRIDGE/bridge/nf_call_ip{,6}tables). We only ever switch per-bridge flags on, and
only those that were 0; which ones we switched is recorded in the kernel, in the ipset
`netpol-bridges` (one member per bridge, `127.0.0.0/8,BRIDGE`, whose comment lists the flags), so
that remove, or a bridge that no longer carries a managed port, turns back off exactly those.

802.1Q/802.1ad-tagged frames skip iptables entirely while the namespace's
net.bridge.bridge-nf-filter-vlan-tagged is 0 (the default; there is no per-bridge knob): a host
with managed bridges gets it switched on too, recorded under the name "." (no interface can be
called so), and back off with the last managed bridge.
Standard library only, Python 3.9.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.netpol.fleet.plugins.module_utils.tools import ToolError, run

FLAGS = ("nf_call_iptables", "nf_call_ip6tables")
VLAN_TAGGED = "bridge-nf-filter-vlan-tagged"
SYSCTLS = "."  # the record's name for the namespace-wide net.bridge sysctls (never an interface's name)
GLOBAL_SYSCTL = {"nf_call_iptables": "bridge-nf-call-iptables", "nf_call_ip6tables": "bridge-nf-call-ip6tables"}
RECORD_SET = "netpol-bridges"
RECORD_KEY = "127.0.0.0/8"  # hash:net,iface needs an address part; the interface is what counts

Flags = Dict[str, int]


class BridgeError(Exception):
    """A state we cannot reach (no br_netfilter, a bridge that does not exist)."""


@dataclass(frozen=True)
class Sysfs:
    """The kernel's files, under root (tests point it at a directory of their own)."""

    root: str = "/"

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def br_netfilter(self) -> bool:
        return os.path.isdir(self.path("proc/sys/net/bridge"))

    def global_flags(self) -> Flags:
        flags = {f: int(_read(self.path("proc/sys/net/bridge", GLOBAL_SYSCTL[f])) or 0) for f in FLAGS}
        flags[VLAN_TAGGED] = int(_read(self.path("proc/sys/net/bridge", VLAN_TAGGED)) or 0)
        return flags

    def exists(self, interface: str) -> bool:
        return os.path.exists(self.path("sys/class/net", interface))

    def is_bridge(self, interface: str) -> bool:
        if interface == SYSCTLS:
            return self.br_netfilter()
        return os.path.isdir(self.path("sys/class/net", interface, "bridge"))

    def master(self, port: str) -> Optional[str]:
        """The bridge the port is enslaved to, or None."""
        link = self.path("sys/class/net", port, "master")
        if not os.path.islink(link):
            return None
        master = os.path.basename(os.readlink(link))
        return master if self.is_bridge(master) else None

    def bridge_ports(self, bridge: str) -> List[str]:
        """Every port of the bridge (its brif directory), sorted."""
        try:
            return sorted(os.listdir(self.path("sys/class/net", bridge, "brif")))
        except OSError:
            return []

    def vlan_filtering(self, bridge: str) -> bool:
        return _read(self.path("sys/class/net", bridge, "bridge", "vlan_filtering")) == "1"

    def flag_path(self, bridge: str, flag: str) -> str:
        if bridge == SYSCTLS:
            return self.path("proc/sys/net/bridge", flag)
        return self.path("sys/class/net", bridge, "bridge", flag)

    def bridge_flags(self, bridge: str) -> Flags:
        return {f: int(_read(self.flag_path(bridge, f)) or 0) for f in flags_of(bridge)}

    def set_flag(self, bridge: str, flag: str, value: int) -> None:
        with open(self.flag_path(bridge, flag), "w") as handle:
            handle.write("%d\n" % value)


def flags_of(bridge: str) -> Tuple[str, ...]:
    return (VLAN_TAGGED,) if bridge == SYSCTLS else FLAGS


def with_sysctls(bridges: Sequence[str]) -> List[str]:
    """The bridges, and the namespace's sysctls when there is any: tagged frames must reach iptables."""
    return sorted(set(bridges)) + [SYSCTLS] if bridges else []


def shown(bridge: str) -> str:
    return "net.bridge" if bridge == SYSCTLS else bridge


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class PortFacts:
    """Where each VM port is: its bridge, None when it is on no bridge; missing = no such interface;
    vlan_aware = those bridges that filter VLANs (vlan_filtering 1)."""

    bridges: Dict[str, Optional[str]]
    missing: Tuple[str, ...]
    vlan_aware: Tuple[str, ...] = ()


def port_facts(sysfs: Sysfs, ports: Sequence[str]) -> PortFacts:
    missing = tuple(p for p in ports if not sysfs.exists(p))
    bridges = {p: sysfs.master(p) for p in ports if p not in missing}
    vlan_aware = tuple(sorted({b for b in bridges.values() if b and sysfs.vlan_filtering(b)}))
    return PortFacts(bridges, missing, vlan_aware)


@dataclass(frozen=True)
class Plan:
    """Flags to switch on (were 0) and back off (we had switched them), and the record after."""

    switch_on: Tuple[Tuple[str, str], ...] = ()
    switch_off: Tuple[Tuple[str, str], ...] = ()
    record: Dict[str, Tuple[str, ...]] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.switch_on or self.switch_off)


def plan(wanted: Sequence[str], record: Mapping[str, Tuple[str, ...]], flags: Mapping[str, Flags],
         exists: Mapping[str, bool]) -> Plan:
    """wanted bridges filter; recorded flags of other bridges go back off (if the bridge still exists)."""
    switch_on: List[Tuple[str, str]] = []
    switch_off: List[Tuple[str, str]] = []
    after: Dict[str, Tuple[str, ...]] = {}
    for bridge in sorted(set(wanted)):
        mine = set(record.get(bridge, ()))
        for flag in flags_of(bridge):
            if flags[bridge][flag] == 0:
                switch_on.append((bridge, flag))
                mine.add(flag)
        if mine:
            after[bridge] = tuple(f for f in flags_of(bridge) if f in mine)
    for bridge in sorted(set(record) - set(wanted)):
        if exists.get(bridge):
            switch_off += [(bridge, f) for f in record[bridge] if flags[bridge].get(f) == 1]
    return Plan(tuple(switch_on), tuple(switch_off), after)


def read_record(module, ipset: str) -> Dict[str, Tuple[str, ...]]:
    """The flags we switched on, per bridge, from the kernel's netpol-bridges set."""
    rc, out, _err = run(module, [ipset, "save", RECORD_SET], check=False)
    if rc != 0:
        return {}
    record = {}
    for line in out.splitlines():
        words = line.split(None, 4)
        if len(words) >= 3 and words[0] == "add" and words[1] == RECORD_SET:
            bridge = words[2].partition(",")[2]
            comment = words[4].strip().strip('"') if len(words) == 5 and words[3] == "comment" else ""
            record[bridge] = tuple(f for f in flags_of(bridge) if f in comment.split())
    return record


def record_text(record: Mapping[str, Tuple[str, ...]]) -> str:
    """ipset restore input that makes the record exactly `record` (nothing when it is empty)."""
    lines = ["create %s hash:net,iface family inet comment" % RECORD_SET, "flush %s" % RECORD_SET]
    lines += ['add %s %s,%s comment "%s"' % (RECORD_SET, RECORD_KEY, b, " ".join(f)) for b, f in sorted(record.items())]
    return "\n".join(lines) + "\n"


def write_record(module, ipset: str, record: Mapping[str, Tuple[str, ...]]) -> None:
    if record:
        run(module, [ipset, "-exist", "restore"], record_text(record))
    else:
        run(module, [ipset, "destroy", RECORD_SET], check=False)  # absent already is fine


def apply(module, sysfs: Sysfs, ipset: str, the_plan: Plan, record_before: Mapping[str, Tuple[str, ...]]) -> None:
    """Record first what we are about to switch on, so a failure half-way still knows it; then
    switch; on an error, put back every flag already changed."""
    merged = dict(record_before)
    merged.update(the_plan.record)
    write_record(module, ipset, merged)
    done: List[Tuple[str, str, int]] = []
    try:
        for bridge, flag in the_plan.switch_on:
            sysfs.set_flag(bridge, flag, 1)
            done.append((bridge, flag, 0))
        for bridge, flag in the_plan.switch_off:
            sysfs.set_flag(bridge, flag, 0)
            done.append((bridge, flag, 1))
    except OSError as e:
        for bridge, flag, value in reversed(done):
            sysfs.set_flag(bridge, flag, value)
        write_record(module, ipset, record_before)
        raise BridgeError("writing %s: %s; every flag was put back" % (e.filename, e.strerror))
    write_record(module, ipset, the_plan.record)


def check_bridges(sysfs: Sysfs, bridges: Sequence[str]) -> None:
    if bridges and not sysfs.br_netfilter():
        raise BridgeError("br_netfilter is not loaded (no /proc/sys/net/bridge): iptables cannot see bridged "
                          "packets, so the VMs on %s would pass unfiltered. Load it: modprobe br_netfilter"
                          % ", ".join(sorted(bridges)))
    for bridge in bridges:
        if bridge != SYSCTLS and not sysfs.is_bridge(bridge):
            raise BridgeError("%s is not a Linux bridge on this host" % bridge)


__all__ = ["BridgeError", "FLAGS", "SYSCTLS", "VLAN_TAGGED", "Plan", "PortFacts", "Sysfs", "ToolError", "apply",
           "check_bridges", "flags_of", "plan", "port_facts", "read_record", "shown", "with_sysctls", "write_record"]
