# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Flows to probe, and measured against expected: the pure part of the verify role."""

from __future__ import annotations

import errno

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.verify import flows as verify

WEB = (["10.0.0.1/24", "fd00::1/64"], [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}])
DB = (["10.0.0.2"], [{"name": "pg", "port": 5432, "protocol": "TCP"}, {"name": "x", "port": 9, "protocol": "SCTP"}])


def flow(src="web", dst="db", address="10.0.0.2", protocol="tcp", port=5432, reachable=True, **extra):
    family = 6 if ":" in address else 4
    return dict(src=src, dst=dst, address=address, family=family, protocol=protocol, port=port,
                reachable=reachable, **extra)


@pytest.mark.parametrize("given, bare, family", [
    ("10.0.0.1/24", "10.0.0.1", 4),
    ("10.0.0.1", "10.0.0.1", 4),
    ("fd00:0:0::0001/64", "fd00::1", 6),
    (" FD00::1 ", "fd00::1", 6),
])
def test_addresses_lose_their_prefix_and_take_one_spelling(given, bare, family):
    assert (verify.bare_address(given), verify.address_family(given)) == (bare, family)


def test_a_bad_address_is_an_error():
    with pytest.raises(ValueError):
        verify.bare_address("10.0.0.300")


def test_probed_ports_default_to_tcp_skip_sctp_and_merge_duplicates():
    assert verify.probed_ports(
        [{"port": 80}, {"port": "53", "protocol": "UDP"}, {"port": 3868, "protocol": "SCTP"}],
        [{"port": 80, "protocol": "tcp"}], None,
    ) == [("tcp", 80), ("udp", 53)]


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_ports_out_of_range_are_errors(port):
    with pytest.raises(ValueError, match="out of range"):
        verify.port_key({"port": port})


def test_a_host_probes_every_address_and_port_of_every_other_host():
    targets = verify.flow_targets("db", {"web": WEB, "db": DB})
    assert [(t["dst"], t["address"], t["family"], t["protocol"], t["port"]) for t in targets] == [
        ("web", "10.0.0.1", 4, "tcp", 80), ("web", "10.0.0.1", 4, "udp", 53),
        ("web", "fd00::1", 6, "tcp", 80), ("web", "fd00::1", 6, "udp", 53),
    ]
    assert {t["src"] for t in targets} == {"db"}


def test_extra_ports_are_probed_on_every_host():
    targets = verify.flow_targets("web", {"web": WEB, "db": DB}, [{"port": 22}])
    assert [(t["protocol"], t["port"]) for t in targets] == [("tcp", 22), ("tcp", 5432)]


def test_equal_matrices_have_no_mismatch():
    measured = [flow(detail="connected"), flow(port=80, reachable=False, detail="timeout")]
    assert verify.compare_flows(measured, [flow(), flow(port=80, reachable="false")]) == {
        "checked": 2, "mismatches": [], "unexpected": 0, "unmeasured": 0}


def test_every_mismatch_is_reported_in_both_directions():
    measured = [flow(reachable=False, detail="timeout"), flow(port=80, detail="connected")]
    expected = [flow(), flow(port=80, reachable=False)]
    result = verify.compare_flows(measured, expected)
    assert [(m["port"], m["expected"], m["measured"], m["detail"]) for m in result["mismatches"]] == [
        (80, False, True, "connected"), (5432, True, False, "timeout")]


def test_flows_in_only_one_list_are_counted_not_judged():
    measured = [flow(), flow(port=1, reachable=False)]
    expected = [flow(address="10.0.0.2/32"), flow(dst="other", reachable=False), flow(protocol="udp")]
    assert verify.compare_flows(measured, expected) == {
        "checked": 1, "mismatches": [], "unexpected": 1, "unmeasured": 2}


def test_a_reachable_flag_that_is_not_a_boolean_is_an_error():
    with pytest.raises(ValueError, match="boolean"):
        verify.compare_flows([flow()], [flow(reachable="maybe")])


def test_the_mismatch_table_is_aligned_and_names_each_flow():
    mismatches = verify.compare_flows(
        [flow(reachable=False, detail="timeout"), flow(src="frontend", address="fd00::2", port=80, detail="connected")],
        [flow(), flow(src="frontend", address="fd00::2", port=80, reachable=False)],
    )["mismatches"]
    assert verify.mismatch_table(mismatches).splitlines() == [
        "SRC       DST  ADDRESS   PROTO/PORT  FAMILY  EXPECTED   MEASURED",
        "frontend  db   fd00::2   tcp/80      IPv6    blocked    reachable",
        "web       db   10.0.0.2  tcp/5432    IPv4    reachable  blocked (timeout)",
    ]


def test_the_summary_counts_reachable_flows_per_source_and_destination():
    measured = [flow(), flow(port=80, reachable=False), flow(src="db", dst="web", address="10.0.0.1")]
    assert verify.matrix_summary(measured).splitlines() == [
        "SRC \\ DST  db   web",
        "db         -    1/1",
        "web        1/2  -",
    ]


@pytest.mark.parametrize("code, detail", [
    (errno.ECONNREFUSED, "refused"), (errno.EHOSTUNREACH, "host unreachable"),
    (errno.EPERM, "denied by the local firewall"), (errno.ECONNRESET, "econnreset"), (None, "error"),
])
def test_failures_are_named_the_way_operators_name_them(code, detail):
    assert verify.failure_detail(code) == detail


def test_a_target_keeps_its_own_keys_and_gets_a_canonical_form():
    assert verify.parse_target({"address": "fd00::0001/64", "port": "80", "protocol": "TCP", "src": "a"}) == {
        "address": "fd00::1", "family": 6, "port": 80, "protocol": "tcp", "src": "a"}


@pytest.mark.parametrize("target, message", [
    ({"address": "10.0.0.1", "port": 1, "protocol": "sctp"}, "only tcp and udp"),
    ({"port": 1}, "needs address and port"),
])
def test_targets_that_cannot_be_probed_are_errors(target, message):
    with pytest.raises(ValueError, match=message):
        verify.parse_target(target)


def test_hosts_are_listed_in_the_order_operators_number_them():
    endpoints = {name: (["10.0.0.1"], [{"port": 1}]) for name in ("h10", "h2", "db", "h1")}
    assert [t["dst"] for t in verify.flow_targets("x", endpoints)] == ["db", "h1", "h2", "h10"]
    measured = [flow(src="h10", dst="h2"), flow(src="h2", dst="h10"), flow(src="h9", dst="h2")]
    assert [row.split()[0] for row in verify.matrix_summary(measured).splitlines()[1:]] == ["h2", "h9", "h10"]
