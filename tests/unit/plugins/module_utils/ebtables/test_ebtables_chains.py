# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure part of the ebtables backend: validate, expected, plan."""

from __future__ import annotations

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.ebtables import chains
from ansible_collections.netpol.fleet.plugins.module_utils.ebtables.chains import (
    ChainError,
    Owned,
    expected,
    plan,
    validate,
)
from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import Chain, Jump, Table

P = "NETPOL-"
FOREIGN = Owned(base=(Chain("PREROUTING", ("--among-src 2:0:a:0:0:9 -j ACCEPT", "-i cni0 -j DROP")),))


def table(*chains, jumps=()):
    return Table("bridge", "nat", tuple(chains), tuple(jumps))


def test_jumps_are_placed_among_foreign_rules_and_deleted_by_position():
    want = expected(table(Chain("NETPOL-A", ("-j DROP",)), jumps=[Jump("PREROUTING", "NETPOL-A", "-i vm1", 2)]),
                    FOREIGN, P)
    assert want.base[0].rules == ("--among-src 2:0:a:0:0:9 -j ACCEPT", "-i vm1 -j NETPOL-A", "-i cni0 -j DROP")
    back = plan("nat", FOREIGN, want, P)
    # Deleting by specification fails for --among-src rules in ebtables-nft: by position, never the foreign ones.
    assert back.restore == "*nat\n:NETPOL-A RETURN\n-D PREROUTING 2\n-X NETPOL-A\nCOMMIT\n"


def test_several_jumps_leave_last_first():
    have = Owned((Chain("NETPOL-A"),), (Chain("PREROUTING", ("-i a -j NETPOL-A", "-j ACCEPT", "-i b -j NETPOL-A")),))
    assert plan("nat", Owned(base=(Chain("PREROUTING", ("-j ACCEPT",)),)), have, P).restore == (
        "*nat\n:NETPOL-A RETURN\n-D PREROUTING 3\n-D PREROUTING 1\n-X NETPOL-A\nCOMMIT\n"
    )


def test_nothing_to_do_is_an_empty_plan():
    want = expected(table(Chain("NETPOL-A", ("-s 2:0:a:0:0:1 -j DROP",))), Owned(), P)
    assert not plan("nat", want, Owned(chains=(Chain("NETPOL-A", ("-s 02:00:0a:00:00:01 -j DROP",)),)), P).changed


@pytest.mark.parametrize("bad, message", [
    (Table("ipv4", "nat"), "unsupported family/table ipv4/nat"),
    (Table("bridge", "broute"), "unsupported family/table bridge/broute"),
    (table(Chain("OTHER")), "must start with 'NETPOL-'"),
    (table(Chain("NETPOL-A"), Chain("NETPOL-A")), "declared twice: NETPOL-A"),
    (table(Chain("NETPOL-A", ("-j NETPOL-B",))), "jumps to NETPOL-B, which is not declared"),
    (table(Chain("NETPOL-A", ("-j FOREIGN",))), "jumps to FOREIGN, which is no verdict"),
    (table(Chain("NETPOL-A", ("-A X -j DROP",))), "without -A/-I/-D"),
    (table(Chain("NETPOL-A", ("--nflog-prefix %s -j DROP" % ("x" * 65),))), "must fit 64 characters"),
    (table(Chain("NETPOL-A"), jumps=[Jump("INPUT", "NETPOL-A")]), "not a built-in chain of table nat"),
    (table(Chain("NETPOL-A"), jumps=[Jump("PREROUTING", "NETPOL-B")]), "NETPOL-B is not declared"),
    (table(Chain("NETPOL-A"), jumps=[Jump("PREROUTING", "NETPOL-A", position=0)]), "position starts at 1"),
    (table(Chain("NETPOL-A"), jumps=[Jump("PREROUTING", "NETPOL-A", "-j DROP")]), "must not name a target"),
])
def test_validate_refuses(bad, message):
    with pytest.raises(ChainError, match=message.replace("(", r"\(")):
        validate(bad, P)


# ---------------------------------------------------------------- reading: a listing that did not reach us whole


class Saves:
    """ebtables-save answering with the given listings, one per call."""

    def __init__(self, *outputs: str):
        self.outputs, self.calls = list(outputs), 0

    def run_command(self, argv, data=None, **kwargs):
        self.calls += 1
        return 0, self.outputs.pop(0), ""


NAT_OURS = "*nat\n:PREROUTING ACCEPT\n:OUTPUT ACCEPT\n:POSTROUTING ACCEPT\n:NETPOL-L2 RETURN\n-A PREROUTING -j NETPOL-L2\n"


def test_save_gaps_names_the_tables_a_listing_lacks():
    assert chains.save_gaps(NAT_OURS, ("nat",)) == "" and chains.save_gaps("", ("nat",)) == "table nat"


def test_a_bridge_table_read_that_came_empty_is_read_again():
    tool = Saves("", NAT_OURS)
    assert [c.name for c in chains.read(tool, "bridge", "nat", "NETPOL-").chains] == ["NETPOL-L2"]
    assert tool.calls == 2


def test_every_bridge_table_read_that_came_empty_is_read_again_before_it_counts_as_no_table():
    tool = Saves("", NAT_OURS)
    assert chains.read_all(tool, "bridge", "NETPOL-")["nat"].base[0].rules == ("-j NETPOL-L2",)
    assert tool.calls == 2
