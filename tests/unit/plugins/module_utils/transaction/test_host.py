# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The transaction's order and undo, with steps that record what they are asked to do."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import Chain, Jump, Table
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


class Crash(Step):
    """A step that ends the process half way, as a fail_json (SystemExit) inside a tool call would."""

    def apply(self) -> None:
        self.journal.append("apply %s" % self.label)
        raise SystemExit(1)


def test_a_step_that_exits_the_process_still_undoes_every_step_taken():
    journal: List[str] = []
    crashing = Transaction([Step("new sets", journal)], [Step("ipv4 filter", journal), Crash("ipv6 filter", journal)])
    with pytest.raises(TransactionError) as failure:
        crashing.run()
    assert journal[-3:] == ["undo ipv6 filter", "undo ipv4 filter", "undo new sets"]
    assert "ipv6 filter: unexpected SystemExit: 1" in str(failure.value)
    assert "the host is on its previous state" in str(failure.value)


def test_unchanged_steps_are_neither_tested_nor_applied():
    journal: List[str] = []
    quiet = Transaction([Step("new sets", journal, False)], [Step("ipv4 filter", journal, False)])
    assert not quiet.changed
    quiet.run()
    assert journal == []


def test_a_family_without_a_backend_is_refused_before_anything_is_read():
    with pytest.raises(TransactionError, match="family 'arp' has no backend in this release"):
        host.prepare(None, "ipset", host.Desired([], [Table(family="arp", name="filter")]), "NETPOL-", ("netpol4-",))


def test_the_snapshot_of_a_jump_keeps_its_match_and_position():
    from ansible_collections.netpol.fleet.plugins.module_utils.iptables.chains import Owned
    from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import Chain, Jump
    have = Owned(chains=(Chain("NETPOL-A", ("-j DROP",)),),
                 base=(Chain("INPUT", ("-s 10.0.0.1/32 -j ACCEPT", "-m physdev --physdev-is-bridged -j NETPOL-A")),))
    table = host._as_table("ipv4", "filter", have, "NETPOL-")
    assert table.jumps == (Jump("INPUT", "NETPOL-A", "-m physdev --physdev-is-bridged", 2),)
    assert table.chains == have.chains


# ---------------------------------------------------------------- planning with every backend, tools stubbed

EMPTY_SAVE = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
EB_HEADER = "# Generated by ebtables-save v1.8.9 (nf_tables) on Tue Dec  1 12:00:00 2026\n"
EB_NAT_OURS = EB_HEADER + (
    "*nat\n:PREROUTING ACCEPT\n:OUTPUT ACCEPT\n:POSTROUTING ACCEPT\n:NETPOL-L2 RETURN\n"
    "-A PREROUTING --among-src 2:0:a:0:0:9 -j ACCEPT\n-A PREROUTING -j NETPOL-L2\n-A NETPOL-L2 -i vm1 -j DROP\n")
L2 = Table("bridge", "nat", (Chain("NETPOL-L2", ("-i vm1 -j DROP",)),), (Jump("PREROUTING", "NETPOL-L2", position=2),))


class Kernel:
    """A module stand-in: answers each tool by name, records every call; `missing` tools are not found."""

    def __init__(self, saves: Dict[str, str], missing: Sequence[str] = (), nft: Optional[Dict[str, str]] = None):
        self.saves, self.missing, self.nft = saves, set(missing), nft or {}
        self.calls: List[List[str]] = []

    def get_bin_path(self, name: str, required: bool = False) -> Optional[str]:
        return None if name in self.missing else name

    def run_command(self, argv, data=None, **kwargs):
        self.calls.append(list(argv))
        if argv[0] == "nft":
            listed = self.nft.get(" ".join(argv[3:]))
            return (0, listed, "") if listed is not None else (1, "", "Error: No such file or directory")
        if argv[:2] == ["ipset", "list"]:
            return 0, "", ""
        return 0, self.saves.get(argv[0], ""), ""


def plan_for(kernel: Kernel, tables: Sequence[Table], **options) -> Transaction:
    return host.prepare(kernel, "ipset", host.Desired([], tables), "NETPOL-", ("netpol4-", "netpol6-"), **options)


def test_bridge_tables_are_read_with_one_ebtables_save_and_applied_after_both_ip_families():
    kernel = Kernel({"iptables-save": EMPTY_SAVE, "ip6tables-save": EMPTY_SAVE, "ebtables-save": ""})
    v4 = Table("ipv4", "filter", (Chain("NETPOL-A", ("-j RETURN",)),), (Jump("INPUT", "NETPOL-A"),))
    transaction = plan_for(kernel, [L2, v4])
    # an empty listing (no bridge table, no set yet) is trusted when a second read agrees (tools.read)
    assert [c[0] for c in kernel.calls] == ["iptables-save", "ip6tables-save", "ebtables-save", "ebtables-save",
                                            "ipset", "ipset"]
    changed = [s.label for s in transaction.all_steps if s.changed]
    assert changed == ["ipv4 filter", "bridge nat"]
    restore = transaction.commands()["bridge nat"]
    assert restore == ("*nat\n:NETPOL-L2 RETURN\n-A NETPOL-L2 -i vm1 -j DROP\n-I PREROUTING 1 -j NETPOL-L2\n"
                       "COMMIT\n")  # the nat table did not exist: position 2 is past its end, so first
    assert [d["before_header"] for d in transaction.diff()][-2:] == ["bridge nat chain NETPOL-L2", "bridge nat jumps"]


def test_owned_bridge_chains_no_longer_desired_are_removed_and_foreign_rules_stay():
    kernel = Kernel({"iptables-save": EMPTY_SAVE, "ip6tables-save": EMPTY_SAVE, "ebtables-save": EB_NAT_OURS})
    transaction = plan_for(kernel, [])
    assert transaction.commands() == {"bridge nat": "*nat\n:NETPOL-L2 RETURN\n-D PREROUTING 2\n-X NETPOL-L2\nCOMMIT\n"}
    assert transaction.report()["tables"] == {"bridge nat": dict(created=[], updated=[], removed=["NETPOL-L2"],
                                              jumps_added=[], jumps_removed=["-I PREROUTING 2 -j NETPOL-L2"])}


def test_the_same_bridge_state_again_changes_nothing():
    kernel = Kernel({"iptables-save": EMPTY_SAVE, "ip6tables-save": EMPTY_SAVE, "ebtables-save": EB_NAT_OURS})
    assert not plan_for(kernel, [L2]).changed


def test_a_host_without_ebtables_is_not_asked_unless_bridge_tables_are_desired():
    kernel = Kernel({"iptables-save": EMPTY_SAVE, "ip6tables-save": EMPTY_SAVE}, missing=["ebtables-save"])
    assert not plan_for(kernel, []).changed
    assert "ebtables-save" not in [c[0] for c in kernel.calls]
    assert host.families_to_read(kernel, ["bridge"]) == ["ipv4", "ipv6", "bridge"]


def test_a_legacy_ebtables_is_refused_before_any_write():
    legacy = "# Generated by ebtables-save v1.8.9 (legacy) on Tue Dec  1 12:00:00 2026\n*nat\n:PREROUTING ACCEPT\n"
    kernel = Kernel({"iptables-save": EMPTY_SAVE, "ip6tables-save": EMPTY_SAVE, "ebtables-save": legacy})
    with pytest.raises(TransactionError, match="nothing was changed: ebtables-save reports the legacy backend"):
        plan_for(kernel, [L2])


NAT_LISTING = ('{"nftables": [{"metainfo": {}}, {"table": {"family": "bridge", "name": "nat"}}, '
               '{"chain": {"name": "PREROUTING", "hook": "prerouting", "policy": "accept"}}, '
               '{"chain": {"name": "NETPOL-L2"}}, '
               '{"rule": {"chain": "PREROUTING", "expr": [{"jump": {"target": "NETPOL-L2"}}]}}]}')


def test_an_emptied_table_is_deleted_last_when_nothing_else_is_in_it_and_shown_in_the_diff():
    only_ours = EB_HEADER + "*nat\n:PREROUTING ACCEPT\n:NETPOL-L2 RETURN\n-A PREROUTING -j NETPOL-L2\n" \
        "-A NETPOL-L2 -i vm1 -j DROP\n"
    kernel = Kernel({"iptables-save": EMPTY_SAVE, "ip6tables-save": EMPTY_SAVE, "ebtables-save": only_ours},
                    nft={"table bridge nat": NAT_LISTING})
    transaction = plan_for(kernel, [], delete_empty_tables=True)
    assert transaction.all_steps[-1].label == "empty tables"
    assert transaction.report()["tables_deleted"] == ["bridge nat"]
    assert transaction.diff()[-1] == dict(before_header="bridge nat (table)", after_header="(deleted)",
                                          before="table bridge nat\n", after="")


def test_a_table_with_a_foreign_rule_is_kept():
    foreign = NAT_LISTING.replace('"expr": [{"jump": {"target": "NETPOL-L2"}}]', '"expr": [{"accept": null}]')
    kernel = Kernel({"iptables-save": EMPTY_SAVE, "ip6tables-save": EMPTY_SAVE, "ebtables-save": EB_NAT_OURS},
                    nft={"table bridge nat": foreign})
    assert plan_for(kernel, [], delete_empty_tables=True).report()["tables_deleted"] == []


def test_without_nft_the_emptied_table_stays_with_a_warning():
    kernel = Kernel({"iptables-save": EMPTY_SAVE, "ip6tables-save": EMPTY_SAVE, "ebtables-save": EB_NAT_OURS},
                    missing=["nft"])
    transaction = plan_for(kernel, [], delete_empty_tables=True)
    assert transaction.report()["tables_deleted"] == []
    assert transaction.warnings == ["nft is missing (package nftables): the empty tables bridge nat stay behind"]
