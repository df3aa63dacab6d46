# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which tables remove may delete: only one that filters nothing once our chains are gone. The
objects are `nft -j list table ip filter` output of iptables-nft 1.8.9 / nft 1.0.6 on this kernel."""

from __future__ import annotations

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.nftables.tables import delete_script, left_empty, read_table
from ansible_collections.netpol.fleet.plugins.module_utils.tools import ToolError

HEADERS = [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
           {"table": {"family": "ip", "name": "filter", "handle": 1}}]


def chain(name, hook=None, policy="accept"):
    body = {"family": "ip", "table": "filter", "name": name, "handle": 2}
    if hook:
        body.update(type="filter", hook=hook, prio=0, policy=policy)
    return {"chain": body}


def rule(chain_name, *expr):
    return {"rule": {"family": "ip", "table": "filter", "chain": chain_name, "handle": 9,
                     "expr": [{"counter": {"packets": 0, "bytes": 0}}] + list(expr)}}


JUMP_TO_OURS = {"jump": {"target": "NETPOL-INGRESS"}}
OURS = [chain("NETPOL-INGRESS"), chain("INPUT", "input"), chain("OUTPUT", "output"),
        rule("INPUT", JUMP_TO_OURS), rule("NETPOL-INGRESS", {"drop": None})]


@pytest.mark.parametrize("objects", [
    HEADERS,  # what removing our chains leaves: the table iptables-nft made, no chain left
    HEADERS + [chain("INPUT", "input"), chain("FORWARD", "forward")],  # empty built-in chains
    HEADERS + OURS,  # check mode: our chains and jumps are still there, and about to go
], ids=["bare table", "empty built-in chains", "only ours"])
def test_a_table_that_filters_nothing_once_ours_are_gone_is_left_empty(objects):
    assert left_empty(objects, "NETPOL-")


@pytest.mark.parametrize("objects", [
    HEADERS + OURS + [rule("INPUT", {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lo"}},
                           {"accept": None})],
    HEADERS + [chain("INPUT", "input", policy="drop")],
    HEADERS + [chain("DOCKER")],
    HEADERS + [rule("INPUT", {"jump": {"target": "DOCKER"}})],
    HEADERS + [rule("INPUT", {"jump": {"target": "NETPOL-X"}}, {"goto": {"target": "OTHER"}})],
    HEADERS + [{"set": {"family": "ip", "name": "blocklist", "table": "filter", "type": "ipv4_addr"}}],
], ids=["foreign rule", "policy drop", "foreign chain", "foreign jump", "mixed verdicts", "nft set"])
def test_anything_foreign_keeps_the_table(objects):
    assert not left_empty(objects, "NETPOL-")


def test_the_table_is_deleted_by_family_and_name():
    assert (delete_script("ipv4", "filter"), delete_script("ipv6", "filter")) == (
        "delete table ip filter\n", "delete table ip6 filter\n")


class Listing:
    """nft answering with the given outputs, one per call."""

    def __init__(self, *outputs: str):
        self.outputs, self.calls = list(outputs), 0

    def run_command(self, argv, data=None, **kwargs):
        self.calls += 1
        return 0, self.outputs.pop(0), ""


WHOLE = '{"nftables": [{"metainfo": {"json_schema_version": 1}}, {"table": {"family": "ip", "name": "filter"}}]}'


def test_a_listing_that_is_no_whole_json_document_is_read_again():
    tool = Listing("", WHOLE[:40], WHOLE)
    assert read_table(tool, "nft", "ipv4", "filter")[1] == {"table": {"family": "ip", "name": "filter"}}
    assert tool.calls == 3


def test_a_listing_never_whole_is_a_tool_error_not_a_json_traceback():
    with pytest.raises(ToolError, match=r"nft -j list table ip filter failed .*lacked a whole JSON document"):
        read_table(Listing("", WHOLE[:40], WHOLE[:40]), "nft", "ipv4", "filter")
