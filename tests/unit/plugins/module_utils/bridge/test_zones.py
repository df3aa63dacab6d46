# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Conntrack zones per L2 domain: a bridge, or a VLAN of a VLAN-aware bridge (the compile of the
zone and mark rules; the kernel's side is test_uml_vlan_aware.py)."""

from __future__ import annotations

import shlex

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.bridge.zones import (
    MARK_CHAIN, MARK_MASK, ZONES_CHAIN, Domain, layout, mark_chain, marks, raw_table, with_marks, zones)
from ansible_collections.netpol.fleet.plugins.module_utils.ebtables.canonical import canonical
from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import Jump, Table


def access(bridge, vlan):
    return {"bridge": bridge, "pvid": vlan, "untagged": [vlan], "tagged": []}


# brv: VMs p1 (VLAN 10), p2 (VLAN 20), p3 (VLAN 10); trunk tagged 10, 20, 30 (30 has no VM);
# trunk2 with PVID 10 untagged and 30 tagged; uplink untagged with PVID 20; other on PVID 30.
# br0: a plain bridge with vnet0.
VM_PORTS = {"p1": "brv", "p2": "brv", "p3": "brv", "vnet0": "br0"}
VLANS = {"p1": access("brv", 10), "p2": access("brv", 20), "p3": access("brv", 10),
         "trunk": {"bridge": "brv", "pvid": None, "untagged": [], "tagged": [10, 20, 30]},
         "trunk2": {"bridge": "brv", "pvid": 10, "untagged": [10], "tagged": [30]},
         "uplink": access("brv", 20), "other": access("brv", 30)}
ENCAP = {"IPv4": "0800", "IPv6": "86DD", "ARP": "0806"}


def frame_mark(the_layout, port, ethertype, vlan=None):
    """The mark the compiled ebtables nat chain gives a frame entering by port (tagged when vlan)."""
    chain = mark_chain(the_layout)
    mark = 0
    for rule in chain.rules if chain else ():
        option = dict(zip(rule.split()[::2], rule.split()[1::2]))
        if option.get("-i") != port or option.get("-p") != ("802_1Q" if vlan else ethertype):
            continue
        if vlan and (int(option["--vlan-id"]) != vlan or option["--vlan-encap"] != ENCAP[ethertype]):
            continue
        assert option["-j"] == "mark" and option["--mark-target"] == "CONTINUE"
        mark |= int(option["--mark-or"], 16)
    return mark


def frame_zone(the_layout, port, ethertype, vlan=None, bridge="brv"):
    """The conntrack zone the compiled rules (ebtables nat, then raw) give an IP frame entering the
    bridge by port, to an address that is not the hypervisor's (0: none)."""
    mark = frame_mark(the_layout, port, ethertype, vlan)
    for rule in raw_table("ipv4" if ethertype == "IPv4" else "ipv6", the_layout).chains[0].rules:
        words = shlex.split(rule)
        value = {w: words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("-") and words[i - 1] != "!"}
        if value["-j"] != "CT" or value.get("-i", bridge) != bridge or value.get("--physdev-in", port) != port:
            continue
        wanted, mask = (int(v, 16) for v in value.get("--mark", "0x0/0x0").split("/"))
        if mark & mask == wanted:
            return int(value["--zone"])
    return 0


def test_a_vlan_aware_bridge_has_a_domain_per_vlan_with_managed_vms_and_a_plain_bridge_one_domain():
    found = layout(VM_PORTS, VLANS)
    assert found.plain == ("br0",)
    assert found.domains == (Domain("brv", 10), Domain("brv", 20))
    assert found.vm_ports == (("p1", Domain("brv", 10)), ("p2", Domain("brv", 20)), ("p3", Domain("brv", 10)))
    # the other ports: by PVID (other's 30 carries no managed VM), and every managed VLAN they carry
    assert found.untagged == (("trunk2", Domain("brv", 10)), ("uplink", Domain("brv", 20)))
    assert found.tagged == (("trunk", Domain("brv", 10)), ("trunk", Domain("brv", 20)), ("trunk2", Domain("brv", 10)),
                            ("uplink", Domain("brv", 20)))


def test_every_ip_frame_is_zoned_by_its_vlan_and_an_unmanaged_vlans_tagged_frames_never_by_the_ports_pvid():
    found = layout(VM_PORTS, VLANS)
    zone = zones(["br0", "brv vlan 10", "brv vlan 20"])
    vlan10, vlan20 = zone["brv vlan 10"], zone["brv vlan 20"]
    for ethertype in ("IPv4", "IPv6"):
        assert frame_zone(found, "p1", ethertype) == vlan10  # a VM's access port
        assert frame_zone(found, "p2", ethertype) == vlan20
        assert frame_zone(found, "trunk", ethertype, vlan=10) == vlan10  # tagged on a trunk without PVID
        assert frame_zone(found, "trunk", ethertype, vlan=20) == vlan20
        assert frame_zone(found, "trunk2", ethertype) == vlan10  # untagged: its PVID
        assert frame_zone(found, "trunk2", ethertype, vlan=10) == vlan10  # its PVID's VLAN, tagged
        assert frame_zone(found, "uplink", ethertype) == vlan20
        assert frame_zone(found, "uplink", ethertype, vlan=20) == vlan20
        # VLAN 30 has no managed VM: zone 0 on every port, tagged or untagged, never the zone of
        # trunk2's PVID (where its state would answer for VLAN 10's packets)
        assert frame_zone(found, "trunk2", ethertype, vlan=30) == 0
        assert frame_zone(found, "trunk", ethertype, vlan=30) == 0
        assert frame_zone(found, "other", ethertype) == 0
        assert frame_zone(found, "vnet0", ethertype, bridge="br0") == zone["br0"]
    assert frame_mark(found, "trunk2", "ARP") == frame_mark(found, "trunk", "ARP", vlan=10) == 0  # ARP: no mark


def test_a_vm_port_that_is_not_an_access_port_is_never_compiled():
    with pytest.raises(ValueError, match="VM port p1 on the VLAN-aware bridge brv is not an access port"):
        layout({"p1": "brv"}, {"p1": {"bridge": "brv", "pvid": None, "untagged": [], "tagged": [10]}})


def test_the_raw_rules_zone_marked_frames_first_then_vm_ports_then_plain_bridges_then_clear_the_mark():
    found = layout(VM_PORTS, VLANS)
    zone = zones(["br0", "brv vlan 10", "brv vlan 20"])
    mark = marks(["brv vlan 10", "brv vlan 20"])
    table = raw_table("ipv4", found)
    assert table.jumps == (Jump("PREROUTING", ZONES_CHAIN),)
    local = "-m addrtype ! --dst-type LOCAL"
    assert table.chains[0].rules == (
        '-i brv -m mark --mark 0x%x/0xff %s -m comment --comment "netpol zone of VLAN 10 on bridge brv: frames of '
        'non-VM ports, by mark" -j CT --zone %d' % (mark["brv vlan 10"], local, zone["brv vlan 10"]),
        '-i brv -m mark --mark 0x%x/0xff %s -m comment --comment "netpol zone of VLAN 20 on bridge brv: frames of '
        'non-VM ports, by mark" -j CT --zone %d' % (mark["brv vlan 20"], local, zone["brv vlan 20"]),
        '-m physdev --physdev-in p1 %s -m comment --comment "netpol zone of VLAN 10 on bridge brv: port p1" '
        '-j CT --zone %d' % (local, zone["brv vlan 10"]),
        '-m physdev --physdev-in p2 %s -m comment --comment "netpol zone of VLAN 20 on bridge brv: port p2" '
        '-j CT --zone %d' % (local, zone["brv vlan 20"]),
        '-m physdev --physdev-in p3 %s -m comment --comment "netpol zone of VLAN 10 on bridge brv: port p3" '
        '-j CT --zone %d' % (local, zone["brv vlan 10"]),
        '-i br0 %s -m comment --comment "netpol zone of bridge br0" -j CT --zone %d' % (local, zone["br0"]),
        '-i brv -m mark ! --mark 0x0/0xff -m comment --comment "netpol: clear the VLAN mark of bridge brv" '
        '-j MARK --set-xmark 0x0/0xff')


def test_zones_are_distinct_per_domain_and_stable_when_other_domains_come_and_go():
    both = zones(["brv vlan 10", "brv vlan 20", "br0"])
    assert len(set(both.values())) == 3 and all(0x1000 <= z < 0xE000 for z in both.values())
    assert zones(["brv vlan 20"])["brv vlan 20"] == both["brv vlan 20"]
    assert zones(["br0"])["br0"] == both["br0"]  # a plain bridge keeps the zone it had before VLANs existed


def test_marks_fit_the_low_byte_are_distinct_and_stable_and_too_many_vlans_stop_the_compile():
    many = marks(["brv vlan %d" % v for v in range(1, 256)])
    assert sorted(many.values()) == list(range(1, 256))
    assert marks(["brv vlan 7"])["brv vlan 7"] == marks(["brv vlan 7", "brv vlan 8"])["brv vlan 7"]
    # clear of kube-proxy's 0x4000/0x8000, Calico's 0xffff0000 and Cilium's 0x0f00
    assert MARK_MASK & (0x4000 | 0x8000 | 0xFFFF0000 | 0x0F00) == 0
    with pytest.raises(ValueError, match="256 VLANs with managed VMs .* at most 255"):
        marks(["brv vlan %d" % v for v in range(1, 257)])


def test_the_mark_chain_marks_ip_frames_of_managed_vlans_from_non_vm_ports_port_by_port_in_ebtables_save_form():
    found = layout(VM_PORTS, VLANS)
    mark = marks(["brv vlan 10", "brv vlan 20"])
    chain = mark_chain(found)
    assert chain.name == MARK_CHAIN

    def tagged(port, vlan):
        return ["-p 802_1Q -i %s --vlan-id %d --vlan-encap %s -j mark --mark-or 0x%x --mark-target CONTINUE"
                % (port, vlan, encap, mark["brv vlan %d" % vlan]) for encap in ("0800", "86DD")]

    def untagged(port, vlan):
        return ["-p %s -i %s -j mark --mark-or 0x%x --mark-target CONTINUE" % (ethertype, port, mark["brv vlan %d" % vlan])
                for ethertype in ("IPv4", "IPv6")]

    assert list(chain.rules) == (tagged("trunk", 10) + tagged("trunk", 20) + untagged("trunk2", 10) + tagged("trunk2", 10)
                                 + untagged("uplink", 20) + tagged("uplink", 20) + ["-j RETURN"])
    assert all(canonical(rule) == rule for rule in chain.rules)  # what ebtables-save prints: no diff on rerun


def test_without_vlan_aware_bridges_the_ebtables_table_is_unchanged_and_gets_no_mark_chain():
    found = layout({"vnet0": "br0"}, {})
    assert mark_chain(found) is None and found.domains == ()
    table = Table(family="bridge", name="nat")
    assert with_marks(table, found) is table
    assert raw_table("ipv6", found).chains[0].rules == (
        '-i br0 -m addrtype ! --dst-type LOCAL -m comment --comment "netpol zone of bridge br0" -j CT --zone %d'
        % zones(["br0"])["br0"],)


def test_with_marks_adds_the_chain_and_its_jump_to_the_anti_spoofing_table():
    table = with_marks(Table(family="bridge", name="nat"), layout(VM_PORTS, VLANS))
    assert [c.name for c in table.chains] == [MARK_CHAIN] and table.jumps == (Jump("PREROUTING", MARK_CHAIN),)
