# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The FDB reader: the learned port of a VM's MAC, nothing of the ports' own or self entries."""

from __future__ import annotations

from ansible_collections.netpol.fleet.plugins.module_utils.bridge.fdb import parse_fdb

# `bridge -j fdb show` of a hypervisor namespace: br0 with port vnet0, the guest NIC 52:54:00:12:34:56
# behind it (iproute2 6.1, as recorded on this machine), plus a static entry and a second learned one.
RECORDED = """[{"mac":"33:33:00:00:00:01","ifname":"br0","flags":["self"],"state":"permanent"},
{"mac":"33:33:ff:12:34:56","ifname":"guest0","flags":["self"],"state":"permanent"},
{"mac":"52:54:00:12:34:56","ifname":"vnet0","flags":[],"master":"br0","state":""},
{"mac":"d6:34:51:bb:73:50","ifname":"vnet0","flags":[],"master":"br0","state":"permanent"},
{"mac":"33:33:00:00:00:01","ifname":"vnet0","flags":["self"],"state":"permanent"},
{"mac":"52:54:00:AA:00:01","ifname":"vnet1","flags":[],"master":"br0","state":"static"},
{"mac":"52:54:00:12:34:56","ifname":"vnet0","vlan":10,"flags":[],"master":"br0","state":""}]"""


def test_learned_and_static_entries_are_the_vms_ports_own_macs_are_not():
    assert parse_fdb(RECORDED) == {"52:54:00:12:34:56": ["vnet0"], "52:54:00:aa:00:01": ["vnet1"]}


def test_a_mac_on_two_ports_is_reported_on_both():
    text = ('[{"mac":"52:54:00:00:00:01","ifname":"vnet2","flags":[],"master":"br1","state":""},'
            '{"mac":"52:54:00:00:00:01","ifname":"vnet0","flags":[],"master":"br0","state":""}]')
    assert parse_fdb(text) == {"52:54:00:00:00:01": ["vnet0", "vnet2"]}


def test_no_bridge_no_entry():
    assert parse_fdb("") == {} == parse_fdb("[]")
