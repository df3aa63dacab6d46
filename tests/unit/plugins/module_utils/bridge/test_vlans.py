# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The VLANs of VLAN-aware bridge ports, read from `bridge -j vlan show`."""

from __future__ import annotations

from ansible_collections.netpol.fleet.plugins.module_utils.bridge.vlans import access_vlan, describe, parse_vlans

# `bridge -j vlan show` in the user-mode-linux guest (iproute2 6.1, Linux 6.1; tests/integration/uml.py):
# brv with access ports p1 (VLAN 10), p2 (VLAN 20) and the trunk (10, 20 tagged), plus a range.
RECORDED = """[{"ifname":"brv","vlans":[{"vlan":1,"flags":["PVID","Egress Untagged"]}]},
{"ifname":"p1","vlans":[{"vlan":10,"flags":["PVID","Egress Untagged"]}]},
{"ifname":"p2","vlans":[{"vlan":20,"flags":["PVID","Egress Untagged"]}]},
{"ifname":"trunk","vlans":[{"vlan":10},{"vlan":20}]},
{"ifname":"p9","vlans":[{"vlan":5,"flags":["PVID","Egress Untagged"]},{"vlan":30,"vlanEnd":32}]}]"""


def test_each_asked_port_gets_its_pvid_and_its_untagged_and_tagged_vlans():
    assert parse_vlans(RECORDED, ["p1", "trunk", "p9", "gone"]) == {
        "p1": {"pvid": 10, "untagged": [10], "tagged": []},
        "trunk": {"pvid": None, "untagged": [], "tagged": [10, 20]},
        "p9": {"pvid": 5, "untagged": [5], "tagged": [30, 31, 32]},
    }
    assert parse_vlans("", ["p1"]) == {}


def test_only_one_untagged_pvid_is_an_access_port():
    found = parse_vlans(RECORDED, ["p1", "p2", "trunk", "p9"])
    assert [access_vlan(found[p]) for p in ("p1", "p2", "trunk", "p9")] == [10, 20, None, None]
    assert access_vlan({"pvid": 10, "untagged": [10, 11], "tagged": []}) is None
    assert access_vlan({"pvid": None, "untagged": [10], "tagged": []}) is None
    assert access_vlan(None) is None


def test_messages_say_what_a_port_carries():
    found = parse_vlans(RECORDED, ["p1", "trunk", "p9"])
    assert describe(found["p1"]) == "access port of VLAN 10"
    assert describe(found["trunk"]) == "PVID none, tagged 10, 20"
    assert describe(found["p9"]) == "PVID 5, untagged 5, tagged 30, 31, 32"
    assert describe({"pvid": None, "untagged": [], "tagged": []}) == "PVID none"
    assert describe(None) == "no VLAN"
