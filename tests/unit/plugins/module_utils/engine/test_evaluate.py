# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The evaluator walks our rule text with the kernel's set semantics (it judges compile)."""

from __future__ import annotations

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.engine.evaluate import Evaluator, Packet
from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import Chain, HostState, IpSet, Jump, SetMember, Table

NETS = IpSet("netpol4-n", "hash:net", "inet", (
    SetMember("10.0.0.0/8"), SetMember("10.1.0.0/16", nomatch=True), SetMember("10.1.2.0/24")))
PORTS = IpSet("netpol4-p", "hash:ip,port", "inet", (SetMember("10.9.9.9,tcp:5432"),))


def state(*rules: str, sets=(NETS, PORTS)) -> HostState:
    chains = (Chain("NETPOL-INGRESS", ("-i lo -j RETURN", "-j NETPOL-I-x")), Chain("NETPOL-I-x", rules + ("-j DROP",)))
    return HostState("h", sets, (Table("ipv4", "filter", chains, (Jump("INPUT", "NETPOL-INGRESS"),)),))


def packet(src="10.0.0.1", dst="10.9.9.9", protocol="TCP", dport=80, **kw) -> Packet:
    return Packet(4, kw.pop("direction", "ingress"), src, dst, protocol, dport, **kw)


@pytest.mark.parametrize("src, allowed", [
    ("10.0.0.1", True),    # in the /8
    ("10.1.0.1", False),   # in the nomatch /16
    ("10.1.2.3", True),    # a more specific entry inside the nomatch wins again
    ("11.0.0.1", False),
])
def test_hash_net_most_specific_entry_decides(src, allowed):
    evaluator = Evaluator(state("-m set --match-set netpol4-n src -j RETURN"))
    assert evaluator.evaluate(packet(src=src)).allowed is allowed


@pytest.mark.parametrize("dst, protocol, dport, allowed", [
    ("10.9.9.9", "TCP", 5432, True), ("10.9.9.9", "UDP", 5432, False), ("10.9.9.9", "TCP", 80, False),
    ("10.9.9.8", "TCP", 5432, False),
])
def test_hash_ip_port_matches_address_protocol_and_port(dst, protocol, dport, allowed):
    evaluator = Evaluator(state("-p tcp -m set --match-set netpol4-p dst,dst -j RETURN"))
    assert evaluator.evaluate(packet(dst=dst, protocol=protocol, dport=dport)).allowed is allowed


def test_deciding_rule_is_reported_and_nflog_does_not_decide():
    evaluator = Evaluator(state('-p udp -m multiport --dports 53,60:70 -m comment --comment "ns/p ingress[0]" -j RETURN',
                                "-m limit --limit 5/min -j NFLOG --nflog-prefix x --nflog-group 1"))
    allowed = evaluator.evaluate(packet(protocol="UDP", dport=65))
    assert allowed.allowed and allowed.chain == "NETPOL-I-x" and "ns/p ingress[0]" in allowed.rule
    denied = evaluator.evaluate(packet(protocol="UDP", dport=71))
    assert not denied.allowed and denied.rule == "-j DROP"
    assert evaluator.evaluate(packet(iface="lo")).rule == "-i lo -j RETURN"


def test_no_jump_for_the_direction_means_not_ours_to_judge():
    assert Evaluator(state()).evaluate(packet(direction="egress")).allowed


def test_anything_outside_the_emitted_subset_is_an_error():
    with pytest.raises(ValueError):
        Evaluator(state("-m mark --mark 1 -j RETURN")).evaluate(packet())
