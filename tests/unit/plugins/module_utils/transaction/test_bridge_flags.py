# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bridge flags step of a host's transaction: planned, applied, undone (sysfs made of files)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.bridge.netfilter import BridgeError, read_record
from ansible_collections.netpol.fleet.plugins.module_utils.iptables.chains import ChainError
from ansible_collections.netpol.fleet.plugins.module_utils.transaction.bridge_flags import BridgeFlagsStep
from ansible_collections.netpol.fleet.plugins.module_utils.transaction.host import Transaction, TransactionError

sys.path.insert(0, str(Path(__file__).parents[1] / "bridge"))  # the backend's tests hold the sysfs and ipset fakes
from test_netfilter import OFF, FakeIpset, make_sysfs  # noqa: E402

ON = {"nf_call_iptables": 1, "nf_call_ip6tables": 1}


class Failing:
    label, changed = "stale sets", True

    def test(self) -> None:
        pass

    def apply(self) -> None:
        raise ChainError("injected failure")

    def undo(self) -> None:
        pass


@pytest.fixture
def sysfs(tmp_path):
    return make_sysfs(tmp_path, {"br10": dict(OFF), "br20": dict(OFF), "br30": dict(ON)}, {})


def test_a_later_failure_puts_every_flag_and_the_record_back(sysfs):
    ipset = FakeIpset()
    BridgeFlagsStep(ipset, "ipset", ["br10"], sysfs).apply()  # an earlier run: br10 is ours
    step = BridgeFlagsStep(ipset, "ipset", ["br20", "br30"], sysfs)
    assert step.report() == {"switched_on": ["br20 nf_call_iptables", "br20 nf_call_ip6tables"],
                             "switched_off": ["br10 nf_call_iptables", "br10 nf_call_ip6tables"]}
    with pytest.raises(TransactionError, match="injected failure"):
        Transaction([], [step, Failing()]).run()
    assert [sysfs.bridge_flags(b) for b in ("br10", "br20", "br30")] == [ON, OFF, ON]
    assert read_record(ipset, "ipset") == {"br10": ("nf_call_iptables", "nf_call_ip6tables"),
                                           ".": ("bridge-nf-filter-vlan-tagged",)}  # the first run's


def test_the_diff_shows_each_flag_and_an_unchanged_step_is_quiet(sysfs):
    ipset = FakeIpset()
    step = BridgeFlagsStep(ipset, "ipset", ["br30"], sysfs)
    assert step.commands() == ["echo 1 > %s/proc/sys/net/bridge/bridge-nf-filter-vlan-tagged" % sysfs.root]
    step.apply()
    step = BridgeFlagsStep(ipset, "ipset", ["br30"], sysfs)
    assert not step.changed and step.commands() == []
    step = BridgeFlagsStep(ipset, "ipset", ["br20"], sysfs)
    diff = step.diff()[0]
    assert "br20 nf_call_iptables=0\n" in diff["before"] and "br20 nf_call_iptables=1\n" in diff["after"]
    assert step.commands()[0] == "echo 1 > %s/sys/class/net/br20/bridge/nf_call_iptables" % sysfs.root


def test_a_bridge_that_is_not_there_is_refused_when_planned(sysfs):
    with pytest.raises(BridgeError, match="br99 is not a Linux bridge"):
        BridgeFlagsStep(FakeIpset(), "ipset", ["br99"], sysfs)
