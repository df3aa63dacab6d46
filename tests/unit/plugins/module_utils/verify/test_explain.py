# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Explain output for every semantic case of the GUIDE's section 2 (the engine's case table),
and its kernel rules checked against the compiled chains walked by the evaluator."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.engine.compile import compile_fleet
from ansible_collections.netpol.fleet.plugins.module_utils.engine.evaluate import Evaluator, Packet
from ansible_collections.netpol.fleet.plugins.module_utils.verify.explain import (
    ExplainError,
    explain,
    explain_text,
    measure,
    rule_comment,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
from engine_cases import CASES, OPTIONS, fleet, policies, policy, select  # noqa: E402


def _record(manifests, flow):
    src, dst, port, protocol, family = flow
    records = explain(fleet(), policies(*manifests), src, dst, port, protocol, OPTIONS)
    return next(r for r in records if r["family"] == family)


@pytest.mark.parametrize("manifests, flow, allowed, reason", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_explain_prints_the_verdict_and_what_decided(manifests, flow, allowed, reason):
    record = _record(manifests, flow)
    text = explain_text([record])
    assert record["reachable"] is allowed
    assert ("IPv%d" % flow[4]) in text and ("allowed" if allowed else "DENIED") in text.splitlines()[1]
    assert reason in text


@pytest.mark.parametrize("manifests, flow, allowed, reason", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_kernel_rules_of_an_explanation_are_the_ones_the_compiled_chains_decide_by(manifests, flow, allowed, reason):
    """Each side names the comments of the rules that decide it; walking the compiled chains of
    the side's host for the same packet ends on one of those rules (or on none, for [])."""
    record = _record(manifests, flow)
    states = compile_fleet(fleet(), policies(*manifests), OPTIONS)
    for side in (record["egress"], record["ingress"]):
        if side["kernel"] is None:
            continue
        packet = Packet(record["family"], side["direction"], record["src_address"], record["address"],
                        record["protocol"].upper(), record["port"])
        outcome = Evaluator(states[side["host"]]).evaluate(packet)
        assert outcome.allowed is side["allowed"]
        if side["kernel"]:
            assert rule_comment(outcome.rule) in side["kernel"], (outcome, side)
        else:
            assert outcome.rule == "", (outcome, side)


def test_explanation_of_a_dual_stack_flow_names_both_families_and_both_sides():
    drawn = policies(policy("shop", "p", {"podSelector": select("db"), "ingress": [
        {"from": [{"podSelector": select("web")}], "ports": [{"port": "pg"}]}]}))
    assert explain_text(explain(fleet(), drawn, "web", "db", "5432", "tcp", OPTIONS)) == "\n".join([
        "web -> db tcp/5432",
        "IPv4 10.0.1.1 -> 10.0.1.2 tcp/5432: allowed",
        "  egress  at web (shop/web): allowed, not isolated for egress",
        "  ingress at db (shop/db): allowed, allowed by shop/p ingress[0]",
        "IPv6 fd00:1::1 -> fd00:1::2 tcp/5432: allowed",
        "  egress  at web (shop/web): allowed, not isolated for egress",
        "  ingress at db (shop/db): allowed, allowed by shop/p ingress[0]",
    ])


def test_a_denied_side_names_its_drop_rule_and_an_open_side_no_rule():
    drawn = policies(policy("shop", "deny", {"podSelector": select("db")}))
    record = explain(fleet(), drawn, "web", "db", 5432, "TCP", OPTIONS)[0]
    assert (record["egress"]["kernel"], record["ingress"]["kernel"]) == ([], ["shop/db isolated for ingress"])
    assert record["ingress"]["isolated_by"] == ["shop/deny"]


def test_addresses_outside_the_fleet_are_explained_from_the_side_we_enforce():
    record = explain(fleet(), policies(), "192.0.2.1", "db", 22, "TCP", OPTIONS)[0]
    assert (record["src"], record["egress"]["host"], record["egress"]["kernel"]) == ("192.0.2.1", None, None)
    assert record["ingress"]["reason"] == "privileged ssh" and record["ingress"]["kernel"] == ["privileged ssh"]
    assert "(not ours)" in explain_text([record])


def test_only_the_families_both_ends_have_are_explained():
    assert [r["family"] for r in explain(fleet(), policies(), "api", "db", 80, "TCP")] == [4]


@pytest.mark.parametrize("src, dst, port, protocol, message", [
    ("nobody", "db", 80, "TCP", "src='nobody' is no workload"),
    ("web", "db", "http", "TCP", "port='http' is not a number"),
    ("web", "db", 70000, "TCP", "out of range"),
    ("web", "db", 80, "ICMP", "protocol='ICMP'"),
    ("api", "fd00:1::2", 80, "TCP", "share no address family"),
])
def test_a_flow_that_cannot_be_explained_names_the_field(src, dst, port, protocol, message):
    with pytest.raises(ExplainError, match=message.replace("(", r"\(").replace("[", r"\[")):
        explain(fleet(), policies(), src, dst, port, protocol)


def _counted(chain, index, rule, packets, family=4):
    return {"family": family, "table": "filter", "chain": chain, "index": index, "rule": rule,
            "packets": packets, "bytes": packets * 60}


DROP = '-m comment --comment "shop/db isolated for ingress" -j DROP'
ESTABLISHED_RULE = "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
ND = "-p ipv6-icmp -m icmp6 --icmpv6-type 135 -j RETURN"


def _read(host, before, after):
    return {"host": host, "before": before, "after": after}


def test_measured_rules_beside_the_expected_ones():
    drawn = policies(policy("shop", "p", {"podSelector": select("db"), "ingress": [{"ports": [{"port": 1}]}]}))
    records = explain(fleet(), drawn, "web", "db", 5432, "TCP", OPTIONS)
    before = [_counted("NETPOL-INGRESS", 1, ESTABLISHED_RULE, 10), _counted("NETPOL-INGRESS", 2, "-j NETPOL-I-x", 4),
              _counted("NETPOL-I-x", 1, DROP, 0), _counted("NETPOL-INGRESS", 3, ND, 0, family=6)]
    after = [_counted("NETPOL-INGRESS", 1, ESTABLISHED_RULE, 30), _counted("NETPOL-INGRESS", 2, "-j NETPOL-I-x", 6),
             _counted("NETPOL-I-x", 1, DROP, 2), _counted("NETPOL-INGRESS", 3, ND, 3, family=6)]
    egress = [_counted("NETPOL-EGRESS", 1, ESTABLISHED_RULE, 1)]
    probes = [{"address": "10.0.1.2", "family": 4, "reachable": False, "detail": "timeout"}]
    measured = measure(records, probes, {"src": _read("web", egress, egress), "dst": _read("db", before, after)})
    ipv4 = measured[0]["measured"]
    assert (ipv4["egress"]["matched"], ipv4["egress"]["agree"]) == ([], True)
    assert [(m["label"], m["packets"], m["target"]) for m in ipv4["ingress"]["matched"]] == [
        ("shop/db isolated for ingress", 2, "DROP")]
    assert ipv4["ingress"]["agree"] is True
    assert explain_text(measured).splitlines()[4:7] == [
        "  probe:  blocked (timeout), as expected",
        "  kernel egress  at web: no rule of ours decided (the packet passed through our chains); as expected",
        '  kernel ingress at db: DROP "shop/db isolated for ingress" (2 packets); as expected',
    ]
    # IPv6: no probe was answered for it here, and the neighbour solicitation is no TCP rule
    assert measured[1]["measured"]["reachable"] is None and measured[1]["measured"]["ingress"]["matched"] == []
    assert measured[1]["measured"]["ingress"]["agree"] is False


def test_a_kernel_rule_other_than_the_simulated_one_is_called_out():
    drawn = policies(policy("shop", "p", {"podSelector": select("db"), "ingress": [{"ports": [{"port": 5432}]}]}))
    records = explain(fleet(), drawn, "web", "db", 5432, "TCP", OPTIONS)[:1]
    before, after = [_counted("NETPOL-I-x", 1, DROP, 0)], [_counted("NETPOL-I-x", 1, DROP, 1)]
    probes = [{"address": "10.0.1.2", "family": 4, "reachable": False, "detail": "timeout"}]
    text = explain_text(measure(records, probes, {"src": None, "dst": _read("db", before, after)}))
    assert "  probe:  blocked (timeout), NOT AS EXPECTED" in text
    assert '  kernel ingress at db: DROP "shop/db isolated for ingress" (1 packets); EXPECTED "shop/p ingress[0]"' in text
    assert "  kernel egress  at web: counters not read" in text
