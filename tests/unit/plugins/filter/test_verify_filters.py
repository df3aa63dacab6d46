# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The verify role's filters, as a playbook calls them: from hostvars and flow records."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.netpol.fleet.plugins.filter import verify

HOSTVARS = {
    "web": {"netpol_addresses": ["10.0.0.1/24"], "netpol_ports": [{"name": "http", "port": 80}]},
    "db": {"ansible_facts": {"all_ipv4_addresses": ["10.0.0.2"], "all_ipv6_addresses": ["fe80::2", "fd00::2"]},
           "netpol_ports": [{"name": "pg", "port": 5432}]},
    "bare": {},
}


def test_targets_come_from_inventory_addresses_or_else_from_gathered_facts():
    targets = verify.netpol_flow_targets(HOSTVARS, "web", ["web", "db"])
    assert [(t["dst"], t["address"], t["port"]) for t in targets] == [("db", "10.0.0.2", 5432), ("db", "fd00::2", 5432)]
    assert [t["address"] for t in verify.netpol_flow_targets(HOSTVARS, "db", ["web", "db"])] == ["10.0.0.1"]


def test_a_host_without_any_address_is_named():
    with pytest.raises(AnsibleFilterError, match="host bare has no netpol_addresses"):
        verify.netpol_flow_targets(HOSTVARS, "web", ["web", "bare"])


def test_a_bad_port_is_a_filter_error():
    hostvars = dict(HOSTVARS, db={"netpol_addresses": ["10.0.0.2"], "netpol_ports": [{"port": 70000}]})
    with pytest.raises(AnsibleFilterError, match="out of range"):
        verify.netpol_flow_targets(hostvars, "web", ["web", "db"])


def test_a_flow_record_missing_a_field_is_a_filter_error():
    with pytest.raises(AnsibleFilterError, match="bad flow record"):
        verify.netpol_flow_compare([{"src": "a"}], [])


def test_mismatches_and_table_chain_as_in_the_role():
    flow = {"src": "web", "dst": "db", "address": "10.0.0.2", "family": 4, "protocol": "tcp", "port": 5432}
    filters = verify.FilterModule().filters()
    mismatches = filters["netpol_flow_mismatches"]([dict(flow, reachable=False, detail="refused")],
                                                   [dict(flow, reachable=True)])
    assert filters["netpol_flow_table"](mismatches).splitlines()[1].split() == [
        "web", "db", "10.0.0.2", "tcp/5432", "IPv4", "reachable", "blocked", "(refused)"]
