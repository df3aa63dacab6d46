# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The br_netfilter flags backend against a sysfs made of files, and an ipset that keeps the record."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.bridge.netfilter import (
    RECORD_SET, SYSCTLS, VLAN_TAGGED, BridgeError, Sysfs, apply, check_bridges, plan, port_facts, read_record,
    record_text, with_sysctls)


class FakeIpset:
    """module.run_command for `ipset save/restore/destroy netpol-bridges`, holding the saved text."""

    def __init__(self):
        self.saved: Optional[str] = None
        self.calls: List[List[str]] = []

    def run_command(self, argv, data=None, binary_data=False, environ_update=None, **_kwargs):
        self.calls.append(list(argv))
        if argv[1] == "save":
            return (0, self.saved, "") if self.saved is not None else (1, "", "The set with the given name does not exist")
        if argv[1:] == ["-exist", "restore"]:
            lines = [l for l in data.splitlines() if l.startswith("add ")]
            self.saved = "create %s hash:net,iface family inet comment\n%s" % (RECORD_SET, "".join(l + "\n" for l in lines))
            return 0, "", ""
        if argv[1] == "destroy":
            self.saved = None
            return 0, "", ""
        raise AssertionError(argv)


def make_sysfs(root: Path, bridges: Dict[str, Dict[str, int]], ports: Dict[str, Optional[str]],
               global_flags=(0, 0), br_netfilter=True, vlan_tagged=0) -> Sysfs:
    net = root / "sys/class/net"
    for bridge, flags in bridges.items():
        (net / bridge / "bridge").mkdir(parents=True)
        for flag, value in flags.items():
            (net / bridge / "bridge" / flag).write_text("%d\n" % value)
    for port, master in ports.items():
        (net / port).mkdir(parents=True)
        if master:
            os.symlink("../%s" % master, str(net / port / "master"))
    if br_netfilter:
        proc = root / "proc/sys/net/bridge"
        proc.mkdir(parents=True)
        (proc / "bridge-nf-call-iptables").write_text("%d\n" % global_flags[0])
        (proc / "bridge-nf-call-ip6tables").write_text("%d\n" % global_flags[1])
        (proc / VLAN_TAGGED).write_text("%d\n" % vlan_tagged)
    return Sysfs(str(root))


OFF = {"nf_call_iptables": 0, "nf_call_ip6tables": 0}


def test_ports_are_found_on_their_bridge_on_none_or_missing(tmp_path):
    sysfs = make_sysfs(tmp_path, {"br10": OFF}, {"vnet0": "br10", "vnet1": None})
    facts = port_facts(sysfs, ["vnet0", "vnet1", "vnet9"])
    assert facts.bridges == {"vnet0": "br10", "vnet1": None} and facts.missing == ("vnet9",)
    assert sysfs.global_flags() == dict(OFF, **{VLAN_TAGGED: 0})


def flags_of(sysfs: Sysfs, bridges):
    return {b: sysfs.bridge_flags(b) for b in bridges}


def converge(sysfs: Sysfs, ipset: FakeIpset, wanted):
    record = read_record(ipset, "ipset")
    known = sorted(set(wanted) | set(record))
    exists = {b: sysfs.is_bridge(b) for b in known}
    the_plan = plan(wanted, record, {b: sysfs.bridge_flags(b) for b in known if exists[b]}, exists)
    if the_plan.changed or the_plan.record != record:
        apply(ipset, sysfs, "ipset", the_plan, record)
    return the_plan


def test_only_flags_that_were_off_are_switched_and_only_those_go_back(tmp_path):
    sysfs = make_sysfs(tmp_path, {"br10": OFF, "br20": {"nf_call_iptables": 1, "nf_call_ip6tables": 0}}, {})
    ipset = FakeIpset()
    first = converge(sysfs, ipset, ["br10", "br20"])
    assert first.switch_on == (("br10", "nf_call_iptables"), ("br10", "nf_call_ip6tables"), ("br20", "nf_call_ip6tables"))
    assert flags_of(sysfs, ["br10", "br20"]) == {"br10": {"nf_call_iptables": 1, "nf_call_ip6tables": 1},
                                                 "br20": {"nf_call_iptables": 1, "nf_call_ip6tables": 1}}
    assert read_record(ipset, "ipset") == {"br10": ("nf_call_iptables", "nf_call_ip6tables"), "br20": ("nf_call_ip6tables",)}
    again = converge(sysfs, ipset, ["br10", "br20"])
    assert not again.changed
    converge(sysfs, ipset, [])  # no managed port any more: back as they were, the record gone
    assert flags_of(sysfs, ["br10", "br20"]) == {"br10": OFF, "br20": {"nf_call_iptables": 1, "nf_call_ip6tables": 0}}
    assert ipset.saved is None


def test_a_bridge_that_no_longer_exists_leaves_the_record(tmp_path):
    sysfs = make_sysfs(tmp_path, {"br10": OFF}, {})
    ipset = FakeIpset()
    ipset.saved = record_text({"gone": ("nf_call_iptables",), "br10": ("nf_call_iptables",)})
    converge(sysfs, ipset, [])
    assert ipset.saved is None


def test_missing_br_netfilter_and_a_non_bridge_are_refused_before_anything_changes(tmp_path):
    sysfs = make_sysfs(tmp_path, {"br10": OFF}, {"vnet0": "br10"}, br_netfilter=False)
    with pytest.raises(BridgeError, match="br_netfilter is not loaded"):
        check_bridges(sysfs, ["br10"])
    check_bridges(sysfs, [])  # nothing to filter, nothing needed
    sysfs = make_sysfs(tmp_path / "b", {"br10": OFF}, {"vnet0": "br10"})
    with pytest.raises(BridgeError, match="vnet0 is not a Linux bridge"):
        check_bridges(sysfs, ["vnet0"])


def test_tagged_frames_meet_iptables_while_a_bridge_is_managed_and_the_knob_goes_back_after(tmp_path):
    """bridge-nf-filter-vlan-tagged is per network namespace: on with the first managed bridge (when it
    was 0), recorded under ".", back to 0 with the last; a knob that was 1 already is never touched."""
    sysfs = make_sysfs(tmp_path / "a", {"br10": OFF}, {})
    ipset = FakeIpset()
    converge(sysfs, ipset, with_sysctls(["br10"]))
    assert sysfs.bridge_flags(SYSCTLS) == {VLAN_TAGGED: 1}
    assert read_record(ipset, "ipset")[SYSCTLS] == (VLAN_TAGGED,)
    converge(sysfs, ipset, with_sysctls([]))
    assert sysfs.bridge_flags(SYSCTLS) == {VLAN_TAGGED: 0} and read_record(ipset, "ipset") == {}
    already = make_sysfs(tmp_path / "b", {"br10": OFF}, {}, vlan_tagged=1)
    ipset = FakeIpset()
    converge(already, ipset, with_sysctls(["br10"]))
    assert SYSCTLS not in read_record(ipset, "ipset")
    converge(already, ipset, with_sysctls([]))
    assert already.bridge_flags(SYSCTLS) == {VLAN_TAGGED: 1}
