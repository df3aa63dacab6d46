# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The anti-spoofing rules compiled per VM port (their effect on real frames: the kernel test
tests/integration/test_antispoof_kernel.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.bridge.antispoof import (
    antispoof_table,
    deny_chain,
    link_local,
    port_chain,
)
from ansible_collections.netpol.fleet.plugins.module_utils.ebtables.canonical import canonical
from ansible_collections.netpol.fleet.plugins.module_utils.ebtables.chains import validate
from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import CHAIN_NAME_MAX, Jump
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import LogOptions, Workload

VM = Workload("vm1", "shop", (), ("10.0.1.5/24", "fd00:1::5"), host="hv1", interface="vnet0",
              mac="52:54:00:AB:0c:01", allowed_addresses=("10.0.9.0/28",))
PORT, DENY = port_chain(VM), deny_chain(VM)


def rules(workload=VM, log=None):
    return {c.name: c.rules for c in antispoof_table([workload], log).chains}


def test_one_jump_first_in_nat_prerouting_and_one_dispatch_rule_per_port():
    other = replace(VM, name="vm2", interface="vnet1", mac="52:54:00:00:00:02")
    table = antispoof_table([other, VM])
    assert (table.family, table.name, table.jumps) == ("bridge", "nat", (Jump("PREROUTING", "NETPOL-L2"),))
    assert table.chains[0].rules == ("-i vnet0 -j %s" % PORT, "-i vnet1 -j %s" % port_chain(other))
    validate(table, "NETPOL-")
    assert all(len(c.name) <= CHAIN_NAME_MAX for c in table.chains)


def test_full_checks_of_a_port():
    deny = "-j %s" % DENY
    assert rules()[PORT] == (
        "-s ! 52:54:00:ab:0c:01 " + deny,
        "-p 802_1Q " + deny,
        "-p S-TAG " + deny,
        "-p ARP --arp-ip-src 10.0.1.5 --arp-mac-src 52:54:00:ab:0c:01 -j RETURN",
        "-p ARP --arp-ip-src 10.0.9.0/28 --arp-mac-src 52:54:00:ab:0c:01 -j RETURN",
        "-p ARP --arp-ip-src 0.0.0.0 --arp-mac-src 52:54:00:ab:0c:01 -j RETURN",
        "-p ARP " + deny,
        "-p RARP -j RETURN",
        "-p IPv4 --ip-proto udp --ip-sport 67 " + deny,
        "-p IPv4 --ip-src 0.0.0.0 --ip-dst 255.255.255.255 --ip-proto udp --ip-sport 68 --ip-dport 67 -j RETURN",
        "-p IPv4 --ip-src 10.0.1.5 -j RETURN",
        "-p IPv4 --ip-src 10.0.9.0/28 -j RETURN",
        "-p IPv4 " + deny,
        "-p IPv6 --ip6-proto ipv6-icmp --ip6-icmp-type router-advertisement " + deny,
        "-p IPv6 --ip6-proto udp --ip6-sport 547 " + deny,
        "-p IPv6 --ip6-src :: --ip6-proto ipv6-icmp --ip6-icmp-type neighbour-solicitation -j RETURN",
        "-p IPv6 --ip6-src :: --ip6-proto ipv6-icmp --ip6-icmp-type router-solicitation -j RETURN",
        "-p IPv6 --ip6-src :: --ip6-proto ipv6-icmp --ip6-icmp-type 143/0:255 -j RETURN",
        "-p IPv6 --ip6-src fe80::5054:ff:feab:c01 -j RETURN",
        "-p IPv6 --ip6-src fd00:1::5 -j RETURN",
        "-p IPv6 " + deny,
        deny,
    )


def test_mac_only_keeps_the_mac_tag_and_server_checks_but_not_the_addresses():
    checks = rules(replace(VM, antispoof="mac_only"))[PORT]
    assert "-p ARP --arp-mac-src 52:54:00:ab:0c:01 -j RETURN" in checks
    assert "-p IPv4 -j RETURN" in checks and "-p IPv6 -j RETURN" in checks
    assert "-p IPv6 --ip6-proto ipv6-icmp --ip6-icmp-type router-advertisement -j %s" % DENY in checks
    assert not [r for r in checks if "--ip-src" in r or "--ip6-src" in r or "--arp-ip-src" in r]


def test_a_port_opted_out_gets_nothing_and_no_port_means_no_chains():
    assert antispoof_table([replace(VM, antispoof="off")]).chains == ()
    assert antispoof_table([replace(VM, interface=None)]).jumps == ()


def test_deny_logs_within_a_rate_limit_naming_the_workload():
    assert rules(log=LogOptions(group=5, limit="1/second", burst=3))[DENY] == (
        '--limit 1/sec --limit-burst 3 --nflog-prefix "netpol L2 deny shop/vm1" --nflog-group 5 -j DROP',
        "-j DROP",
    )
    assert rules()[DENY] == ("-j DROP",)


def test_every_rule_is_already_in_the_form_ebtables_prints():
    for chain_rules in rules(log=LogOptions()).values():
        assert [canonical(r) for r in chain_rules] == list(chain_rules)


def test_eui64_link_local():
    assert link_local("02:00:0a:00:00:01") == "fe80::aff:fe00:1"  # what the kernel forms for this MAC
    assert link_local("52:54:00:12:34:56") == "fe80::5054:ff:fe12:3456"


def test_a_checked_port_without_mac_is_refused():
    with pytest.raises(ValueError, match="shop/vm1 on vnet0: anti-spoofing needs its MAC"):
        antispoof_table([replace(VM, mac=None)])
