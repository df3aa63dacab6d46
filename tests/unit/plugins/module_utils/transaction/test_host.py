# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The transaction's order and undo, with steps that record what they are asked to do."""

from __future__ import annotations

from typing import List

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import Table
from ansible_collections.netpol.fleet.plugins.module_utils.iptables.chains import ChainError
from ansible_collections.netpol.fleet.plugins.module_utils.transaction import host
from ansible_collections.netpol.fleet.plugins.module_utils.transaction.host import Transaction, TransactionError


class Step:
    def __init__(self, label: str, journal: List[str], changed: bool = True, fail: str = "", undo_fails: bool = False):
        self.label, self.journal, self.changed, self.fail, self.undo_fails = label, journal, changed, fail, undo_fails

    def _do(self, what: str) -> None:
        self.journal.append("%s %s" % (what, self.label))
        if self.fail == what:
            raise ChainError("%s of %s failed" % (what, self.label))

    def test(self) -> None:
        self._do("test")

    def apply(self) -> None:
        self._do("apply")

    def undo(self) -> None:
        self.journal.append("undo %s" % self.label)
        if self.undo_fails:
            raise ChainError("cannot undo %s" % self.label)


def transaction(journal: List[str], **faults) -> Transaction:
    def step(label: str, changed: bool = True) -> Step:
        return Step(label, journal, changed, fail=faults.get(label, ""), undo_fails=label in faults.get("undo", ()))
    return Transaction([step("new sets")], [step("changed sets", False), step("ipv4 filter"), step("ipv6 filter"),
                                            step("stale sets")])


def test_new_sets_first_then_every_dry_check_then_the_visible_steps_in_order():
    journal: List[str] = []
    transaction(journal).run()
    assert journal == ["apply new sets", "test ipv4 filter", "test ipv6 filter", "test stale sets",
                       "apply ipv4 filter", "apply ipv6 filter", "apply stale sets"]


def test_a_refused_dry_check_only_undoes_the_new_sets():
    journal: List[str] = []
    with pytest.raises(TransactionError, match="refused before any visible change: ipv6 filter"):
        transaction(journal, **{"ipv6 filter": "test"}).run()
    assert journal == ["apply new sets", "test ipv4 filter", "test ipv6 filter", "undo new sets"]


def test_a_failed_step_undoes_every_step_taken_last_first_itself_included():
    journal: List[str] = []
    with pytest.raises(TransactionError) as failure:
        transaction(journal, **{"stale sets": "apply"}).run()
    assert journal[-5:] == ["apply stale sets", "undo stale sets", "undo ipv6 filter", "undo ipv4 filter", "undo new sets"]
    assert "the host is on its previous state" in str(failure.value)


def test_an_undo_that_fails_does_not_stop_the_others_and_is_reported():
    journal: List[str] = []
    with pytest.raises(TransactionError) as failure:
        transaction(journal, **{"ipv6 filter": "apply", "undo": ("ipv4 filter",)}).run()
    assert journal[-3:] == ["undo ipv6 filter", "undo ipv4 filter", "undo new sets"]
    assert "putting back the previous ipv4 filter failed too: cannot undo ipv4 filter" in str(failure.value)
    assert "previous state" not in str(failure.value)


def test_unchanged_steps_are_neither_tested_nor_applied():
    journal: List[str] = []
    quiet = Transaction([Step("new sets", journal, False)], [Step("ipv4 filter", journal, False)])
    assert not quiet.changed
    quiet.run()
    assert journal == []


def test_a_family_without_a_backend_is_refused_before_anything_is_read():
    with pytest.raises(TransactionError, match="family 'bridge' has no backend in this release"):
        host.prepare(None, "ipset", host.Desired([], [Table(family="bridge", name="filter")]), "NETPOL-", ("netpol4-",))


def test_the_snapshot_of_a_jump_keeps_its_match_and_position():
    from ansible_collections.netpol.fleet.plugins.module_utils.iptables.chains import Owned
    from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import Chain, Jump
    have = Owned(chains=(Chain("NETPOL-A", ("-j DROP",)),),
                 base=(Chain("INPUT", ("-s 10.0.0.1/32 -j ACCEPT", "-m physdev --physdev-is-bridged -j NETPOL-A")),))
    table = host._as_table("ipv4", "filter", have, "NETPOL-")
    assert table.jumps == (Jump("INPUT", "NETPOL-A", "-m physdev --physdev-is-bridged", 2),)
    assert table.chains == have.chains
