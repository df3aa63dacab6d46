# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.iptables import chains
from ansible_collections.netpol.fleet.plugins.module_utils.iptables.chains import (
    ChainError,
    Owned,
    displaced_jumps,
    expected,
    owned_from_save,
    owned_text,
    plan,
    validate,
)
from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import Chain, Jump, Table
from ansible_collections.netpol.fleet.plugins.module_utils.iptables.text import parse_save

P = "NETPOL-"


def kernel(*lines: str) -> Owned:
    """The owned view of a filter table whose save text has these chain and rule lines."""
    head = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    return owned_from_save(parse_save("\n".join(head + list(lines) + ["COMMIT"]))["filter"], P)


def converge_text(desired: Table, have: Owned) -> str:
    return plan("filter", expected(desired, have, P), have, P).restore


def table(chains=(), jumps=()) -> Table:
    return Table("ipv4", "filter", tuple(chains), tuple(jumps))


A = Chain("NETPOL-A", ("-p tcp -m tcp --dport 80 -j RETURN", "-j DROP"))
B = Chain("NETPOL-B", ("-j NETPOL-A",))
JUMP_A = Jump("INPUT", "NETPOL-A")


def test_owned_view_ignores_foreign_chains_but_keeps_builtin_rules_for_positions():
    have = kernel(":FOO - [0:0]", ":NETPOL-A - [0:0]", "-A INPUT -j FOO", "-A FOO -j RETURN", "-A NETPOL-A -j DROP")
    assert have.chains == (Chain("NETPOL-A", ("-j DROP",)),)
    assert have.base[0] == Chain("INPUT", ("-j FOO",))


def test_fresh_host_gets_chains_declared_first_then_rules_then_jumps():
    assert converge_text(table([B, A], [JUMP_A]), kernel()) == (
        "*filter\n"
        ":NETPOL-A - [0:0]\n"
        ":NETPOL-B - [0:0]\n"
        "-A NETPOL-A -p tcp -m tcp --dport 80 -j RETURN\n"
        "-A NETPOL-A -j DROP\n"
        "-A NETPOL-B -j NETPOL-A\n"
        "-I INPUT 1 -j NETPOL-A\n"
        "COMMIT\n"
    )


APPLIED = (
    ":FOO - [0:0]",
    ":NETPOL-A - [0:0]",
    ":NETPOL-B - [0:0]",
    "-A INPUT -j NETPOL-A",
    "-A INPUT -j FOO",
    "-A FOO -j RETURN",
    "-A NETPOL-A -p tcp -m tcp --dport 80 -j RETURN",
    "-A NETPOL-A -j DROP",
    "-A NETPOL-B -j NETPOL-A",
)


def test_same_state_plans_nothing():
    have = kernel(*APPLIED)
    result = plan("filter", expected(table([A, B], [JUMP_A]), have, P), have, P)
    assert not result.changed and result == type(result)()


def test_only_the_changed_chain_is_rewritten_so_the_others_keep_their_counters():
    new_b = Chain("NETPOL-B", ("-s 10.0.0.1/32 -j NETPOL-A",))
    assert converge_text(table([A, new_b], [JUMP_A]), kernel(*APPLIED)) == (
        "*filter\n:NETPOL-B - [0:0]\n-A NETPOL-B -s 10.0.0.1/32 -j NETPOL-A\nCOMMIT\n"
    )


def test_a_chain_no_longer_desired_is_flushed_and_deleted_after_its_jump_is_gone():
    text = converge_text(table([Chain("NETPOL-C", ("-j DROP",))], []), kernel(*APPLIED))
    assert text == (
        "*filter\n"
        ":NETPOL-C - [0:0]\n"
        ":NETPOL-A - [0:0]\n"
        ":NETPOL-B - [0:0]\n"
        "-D INPUT -j NETPOL-A\n"
        "-A NETPOL-C -j DROP\n"
        "-X NETPOL-A\n"
        "-X NETPOL-B\n"
        "COMMIT\n"
    )


def test_absent_state_removes_every_owned_chain_and_jump_and_nothing_foreign():
    text = converge_text(table(), kernel(*APPLIED))
    assert "FOO" not in text
    assert text.splitlines()[1:-1] == [
        ":NETPOL-A - [0:0]",
        ":NETPOL-B - [0:0]",
        "-D INPUT -j NETPOL-A",
        "-X NETPOL-A",
        "-X NETPOL-B",
    ]


PUSHED_DOWN = (":NETPOL-A - [0:0]", "-A INPUT -s 10.9.0.0/16 -j ACCEPT", "-A INPUT -j NETPOL-A",
               *(f"-A NETPOL-A {r}" for r in A.rules))


def test_a_jump_pushed_down_by_a_foreign_rule_stays_and_is_reported():
    # Another owner inserted its rule at position 1 after ours: moving ours back would make the
    # two swap places on every run. It stays (no change) and the warning names what is above it.
    have = kernel(*PUSHED_DOWN)
    want = expected(table([A], [JUMP_A]), have, P)
    assert plan("filter", want, have, P).restore == ""
    assert displaced_jumps(table([A], [JUMP_A]), want, P) == [
        "ipv4 filter INPUT: 1 foreign rule(s) above our jump '-j NETPOL-A' (position 1 wanted, it is at 2) decide "
        "first; it is left where it is rather than moved back on every run (enforce_position moves it back)"]


def test_a_jump_with_enforce_position_moves_back_above_the_foreign_rule():
    have = kernel(*PUSHED_DOWN)
    jump = Jump("INPUT", "NETPOL-A", enforce_position=True)
    want = expected(table([A], [jump]), have, P)
    result = plan("filter", want, have, P)
    assert result.restore == "*filter\n-D INPUT -j NETPOL-A\n-I INPUT 1 -j NETPOL-A\nCOMMIT\n"
    assert (result.jumps_added, result.jumps_removed) == (("-I INPUT 1 -j NETPOL-A",), ("-I INPUT 2 -j NETPOL-A",))
    assert displaced_jumps(table([A], [jump]), want, P) == []


def test_a_jump_below_foreign_rules_by_its_own_position_is_no_warning():
    have = kernel(":NETPOL-A - [0:0]", "-A INPUT -j ACCEPT", "-A INPUT -j NETPOL-A", *(f"-A NETPOL-A {r}" for r in A.rules))
    desired = table([A], [Jump("INPUT", "NETPOL-A", position=2)])
    want = expected(desired, have, P)
    assert plan("filter", want, have, P).restore == "" and displaced_jumps(desired, want, P) == []


def test_a_changed_jump_is_inserted_at_its_position_again():
    have = kernel(*PUSHED_DOWN)
    moved = Jump("INPUT", "NETPOL-A", match="-i eth0")
    assert converge_text(table([A], [moved]), have) == (
        "*filter\n-D INPUT -j NETPOL-A\n-I INPUT 1 -i eth0 -j NETPOL-A\nCOMMIT\n")


def test_duplicate_jumps_are_all_deleted_and_one_inserted():
    have = kernel(":NETPOL-A - [0:0]", "-A INPUT -j NETPOL-A", "-A INPUT -j NETPOL-A", *(f"-A NETPOL-A {r}" for r in A.rules))
    assert converge_text(table([A], [JUMP_A]), have) == (
        "*filter\n-D INPUT -j NETPOL-A\n-D INPUT -j NETPOL-A\n-I INPUT 1 -j NETPOL-A\nCOMMIT\n"
    )


def test_positions_past_the_end_mean_last_and_several_jumps_keep_their_order():
    jumps = [Jump("INPUT", "NETPOL-B", "-i eth0", 9), Jump("INPUT", "NETPOL-A", position=2)]
    text = converge_text(table([A, B], jumps), kernel("-A INPUT -j ACCEPT"))
    assert text.splitlines()[-3:] == ["-I INPUT 2 -j NETPOL-A", "-I INPUT 3 -i eth0 -j NETPOL-B", "COMMIT"]


def test_diff_names_what_a_hashed_chain_stands_for_from_its_first_rule():
    labelled = Chain("NETPOL-I-abc", ('-m conntrack --ctstate INVALID -m comment --comment "netpol ingress of '
                                      'workload shop/db: policies shop/db" -j DROP', "-j DROP"))
    assert owned_text(Owned((labelled,)), P).splitlines()[0] == (
        ":NETPOL-I-abc  # netpol ingress of workload shop/db: policies shop/db")


def test_diff_text_lists_owned_chains_and_jumps_with_their_positions():
    assert owned_text(kernel(*APPLIED), P) == (
        ":NETPOL-A\n"
        "-A NETPOL-A -p tcp -m tcp --dport 80 -j RETURN\n"
        "-A NETPOL-A -j DROP\n"
        ":NETPOL-B\n"
        "-A NETPOL-B -j NETPOL-A\n"
        "-I INPUT 1 -j NETPOL-A\n"
    )
    assert owned_text(kernel(), P) == ""


@pytest.mark.parametrize(
    "desired, message",
    [
        (table([Chain("FOO")]), "must start with 'NETPOL-'"),
        (table([Chain("NETPOL-" + "X" * 22)]), "fit 28 characters"),
        (table([A, A]), "declared twice: NETPOL-A"),
        (table([B]), "jumps to NETPOL-A, which is not declared"),
        (table([Chain("NETPOL-A", ("-A NETPOL-A -j DROP",))]), "without -A/-I/-D"),
        (table([A], [Jump("FOO", "NETPOL-A")]), "'FOO' is not a built-in chain of table filter"),
        (table([A], [Jump("INPUT", "NETPOL-Z")]), "NETPOL-Z, which is not declared"),
        (table([A], [Jump("INPUT", "NETPOL-A", position=0)]), "position starts at 1"),
        (Table("ipv4", "security"), "unsupported family/table ipv4/security"),
    ],
)
def test_validate_names_what_is_wrong(desired, message):
    with pytest.raises(ChainError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(desired, P)


def test_validate_accepts_a_complete_table():
    validate(table([A, B], [JUMP_A, Jump("FORWARD", "NETPOL-B", "-m physdev --physdev-is-bridged", 3)]), P)


def test_a_builtin_chain_the_save_did_not_print_still_gets_its_jump():
    have = owned_from_save(parse_save("*raw\nCOMMIT\n")["raw"], P)
    desired = Table("ipv4", "raw", (A,), (Jump("PREROUTING", "NETPOL-A"),))
    assert plan("raw", expected(desired, have, P), have, P).restore.splitlines()[-2] == "-I PREROUTING 1 -j NETPOL-A"


# ---------------------------------------------------------------- reading: a listing that did not reach us whole


class Saves:
    """iptables-save answering with the given listings, one per call; records the calls."""

    def __init__(self, *outputs: str):
        self.outputs, self.calls = list(outputs), []

    def run_command(self, argv, data=None, **kwargs):
        self.calls.append(list(argv))
        return 0, self.outputs.pop(0), ""


OURS = "*filter\n:INPUT ACCEPT [0:0]\n:NETPOL-A - [0:0]\n-A INPUT -j NETPOL-A\n-A NETPOL-A -j DROP\nCOMMIT\n"


@pytest.mark.parametrize("text, tables, lacking", [
    (OURS, ("filter",), ""),
    ("", (), ""),
    ("*nat\nCOMMIT\n", ("filter",), "table filter"),
    ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j NETPOL-A\n", (), "the COMMIT ending table filter"),
    ("*filter\n:INPUT ACCEPT [0:0]\n*nat\nCOMMIT\n", ("filter", "nat"), "the COMMIT ending table filter"),
])
def test_save_gaps_names_a_table_missing_or_cut_short(text, tables, lacking):
    assert chains.save_gaps(text, tables) == lacking


def test_a_read_back_that_came_empty_is_read_again_not_taken_for_no_chains():
    tool = Saves("", OURS)
    owned = chains.read(tool, "ipv4", "filter", "NETPOL-")
    assert [c.name for c in owned.chains] == ["NETPOL-A"] and len(tool.calls) == 2


def test_the_first_read_of_a_host_that_came_empty_is_read_again_so_no_jump_is_added_twice():
    tool = Saves("", OURS)
    owned = chains.read_all(tool, "ipv4", "NETPOL-")["filter"]
    assert owned.base[0].rules == ("-j NETPOL-A",) and len(tool.calls) == 2


def test_a_host_without_any_table_is_empty_when_two_reads_say_so():
    tool = Saves("", "")
    assert chains.read_all(tool, "ipv4", "NETPOL-")["filter"].chains == () and len(tool.calls) == 2
