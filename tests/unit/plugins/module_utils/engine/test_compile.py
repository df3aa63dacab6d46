# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""compile_fleet: the semantic table through the compiled rules, golden texts, and the
properties users rely on (names, determinism, scaling, family split, limits)."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.ipset import text as ipset_text
from ansible_collections.netpol.fleet.plugins.module_utils.iptables import text as iptables_text
from ansible_collections.netpol.fleet.plugins.module_utils.engine.compile import compile_fleet
from ansible_collections.netpol.fleet.plugins.module_utils.engine.evaluate import Evaluator, Packet
from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import (
    CHAIN_NAME_MAX,
    CHAIN_PREFIX,
    SET_NAME_MAX,
    SET_PREFIX,
    SET_TEMP_SUFFIX,
    HostState,
)
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import CompileOptions, LogOptions
from ansible_collections.netpol.fleet.plugins.module_utils.engine.names import LABEL_MAX, set_name
from ansible_collections.netpol.fleet.plugins.module_utils.iptables.text import rule_comment
from ansible_collections.netpol.fleet.plugins.module_utils.engine.privileged import rules_from_vars

from engine_cases import CASES, INVENTORY, OPTIONS, fleet, policies, policy, select

GOLDEN = Path(__file__).parent / "golden"


def _address(the_fleet, endpoint: str, family: int) -> str:
    workload = next((w for w in the_fleet.workloads if w.name == endpoint), None)
    return workload.addresses_of(family)[0] if workload else endpoint


@pytest.mark.parametrize("manifests, flow, allowed, reason", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_compiled_rules_decide_like_the_table(manifests, flow, allowed, reason):
    """Egress walked on the source host, ingress on the destination host."""
    the_fleet = fleet()
    states = compile_fleet(the_fleet, policies(*manifests), OPTIONS)
    src, dst, port, protocol, family = flow
    packet = dict(family=family, src=_address(the_fleet, src, family), dst=_address(the_fleet, dst, family),
                  protocol=protocol, dport=port, iface="lo" if src == dst or packet_is_self(the_fleet, src, dst) else "eth0")
    outcomes = [Evaluator(states[host]).evaluate(Packet(direction=direction, **packet))
                for host, direction in ((src, "egress"), (dst, "ingress")) if host in states]
    assert all(o.allowed for o in outcomes) is allowed
    if allowed and "[" in reason:  # allowed by a policy rule: that rule's comment names it
        assert reason in " ".join(o.rule for o in outcomes)


def packet_is_self(the_fleet, src: str, dst: str) -> bool:
    return any(w.name == src and dst in w.addresses for w in the_fleet.workloads)


GOLDEN_CASES = {
    "db_from_web_named_port": [policy("shop", "db", {"podSelector": select("db"), "ingress": [
        {"from": [{"podSelector": select("web")}], "ports": [{"port": "pg"}, {"port": 53, "protocol": "UDP"}]}]})],
    "ipblock_except_and_zero": [policy("shop", "db-cidr", {"podSelector": select("db"), "ingress": [
        {"from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}},
                  {"ipBlock": {"cidr": "fd00::/16", "except": ["fd00:1::/32"]}}]}]})],
    "egress_named_port_per_destination": [policy("shop", "web", {"podSelector": select("web"), "egress": [
        {"to": [{"namespaceSelector": {}}],
         "ports": [{"port": "http"}, {"port": 5000, "endPort": 5010}, {"port": 22}, {"port": 53, "protocol": "SCTP"}]}]})],
    "deny_all_with_logging": [policy("shop", "deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})],
}


def _render(state: HostState) -> str:
    parts = ["# ipset\n" + ipset_text.render_restore(state.sets)]
    parts += ["# %s\n%s" % (t.family, iptables_text.render_restore(t)) for t in state.tables]
    return "\n".join(parts)


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_golden_restore_text(case):
    """The exact text a fresh host would restore; on mismatch the actual text lands beside the .ref."""
    options = CompileOptions(log=LogOptions(group=5, limit="20/min", burst=10)) if "logging" in case else OPTIONS
    states = compile_fleet(fleet(), policies(*GOLDEN_CASES[case]), options, hosts=["web", "db"])
    actual = "\n".join("## host %s\n%s" % (host, _render(state)) for host, state in states.items())
    reference = GOLDEN / (case + ".ref")
    if not reference.exists() or reference.read_text() != actual:
        (GOLDEN / (case + ".actual")).write_text(actual)
    assert reference.exists(), "no reference yet: review %s.actual and rename it" % case
    assert reference.read_text() == actual, "differs: diff %s.ref %s.actual" % (case, case)


def _all_names(state: HostState):
    chains = [c.name for t in state.tables for c in t.chains]
    rules = [r for t in state.tables for c in t.chains for r in c.rules]
    return chains, [s.name for s in state.sets], rules


def test_names_fit_the_kernel_and_carry_our_prefix():
    states = compile_fleet(fleet(), policies(*[m for ms in GOLDEN_CASES.values() for m in ms]), OPTIONS)
    for state in states.values():
        chains, sets = _all_names(state)[:2]
        assert all(c.startswith(CHAIN_PREFIX) and len(c) <= CHAIN_NAME_MAX for c in chains)
        assert all(s.startswith(SET_PREFIX) and len(s + SET_TEMP_SUFFIX) <= SET_NAME_MAX for s in sets)


def test_same_input_in_any_order_gives_the_same_state():
    drawn = list(policies(*[m for ms in GOLDEN_CASES.values() for m in ms]))
    first = compile_fleet(fleet(), drawn, OPTIONS)
    random.Random(7).shuffle(drawn)
    shuffled_fleet = dataclasses.replace(fleet(), workloads=tuple(reversed(fleet().workloads)))
    assert compile_fleet(shuffled_fleet, drawn, OPTIONS) == first


def test_membership_change_renames_nothing_and_leaves_rules_alone():
    drawn = policies(policy("shop", "db", {"podSelector": select("db"), "ingress": [{"from": [{"namespaceSelector": {}}]}]}))
    before = compile_fleet(fleet(), drawn)["db"]
    grown = dict(INVENTORY, extra={"netpol_namespace": "ops", "netpol_addresses": ["10.0.9.9", "fd00:9::9"]})
    after = compile_fleet(fleet(grown), drawn)["db"]
    assert after.tables == before.tables
    assert [s.name for s in after.sets] == [s.name for s in before.sets]
    assert "10.0.9.9" in [m.entry for s in after.sets for m in s.members]


def test_doubling_the_peers_leaves_the_rule_count_unchanged():
    drawn = policies(policy("shop", "db", {"podSelector": select("db"), "ingress": [
        {"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}], "ports": [{"port": 5432}]}]}))

    def inventory(peers):
        return dict(INVENTORY, **{"peer%d" % i: {"netpol_namespace": "ops", "netpol_addresses": ["10.0.8.%d" % i]}
                                  for i in range(peers)})
    small, large = (compile_fleet(fleet(inventory(n)), drawn)["db"] for n in (10, 20))
    assert _all_names(small)[2] == _all_names(large)[2]
    assert sum(len(s.members) for s in large.sets) == sum(len(s.members) for s in small.sets) + 10


def test_one_set_per_distinct_selector_shared_by_rules_and_hosts():
    peer = {"from": [{"podSelector": select("web")}]}
    drawn = policies(policy("shop", "a", {"podSelector": select("db"), "ingress": [peer, peer]}),
                     policy("shop", "b", {"podSelector": {}, "ingress": [peer]}))
    states = compile_fleet(fleet(), drawn)
    assert len(states["db"].sets) == 2  # one per family
    assert {s.name for s in states["db"].sets} == {s.name for s in states["web"].sets}


def test_hosts_limits_the_output_but_peers_resolve_fleet_wide():
    drawn = policies(policy("shop", "db", {"podSelector": select("db"), "ingress": [{"from": [{"namespaceSelector": {}}]}]}))
    states = compile_fleet(fleet(), drawn, hosts=["db"])
    assert list(states) == ["db"]
    assert "10.0.2.1" in [m.entry for s in states["db"].sets for m in s.members]


def test_families_never_mix_and_an_ipv4_policy_isolates_ipv6():
    drawn = policies(policy("shop", "db", {"podSelector": select("db"), "ingress": [
        {"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}))
    state = compile_fleet(fleet(), drawn, CompileOptions(privileged=OPTIONS.privileged))["db"]
    v6 = state.table("ipv6")
    rules = [r for c in v6.chains for r in c.rules]
    assert not [r for r in rules if "10." in r or "192.0.2" in r]
    isolated = next(c for c in v6.chains if c.name.startswith("NETPOL-I-"))
    assert isolated.rules == ('-m conntrack --ctstate INVALID -m comment --comment "netpol ingress of workload shop/db: '
                              'policies shop/db" -j DROP',
                              '-m comment --comment "shop/db isolated for ingress" -j DROP')
    assert all(s.family == "inet" for s in state.sets)


def test_invalid_packets_drop_before_the_privileged_paths_of_isolated_workloads_only():
    """A SYN+FIN to a privileged port is no management connection (issue 12.7)."""
    drawn = policies(policy("shop", "db", {"podSelector": select("db"), "ingress": []}))
    states = compile_fleet(fleet(), drawn, OPTIONS)
    base = next(c for c in states["db"].table("ipv4").chains if c.name == "NETPOL-INGRESS").rules
    invalid = base.index("-m conntrack --ctstate INVALID -j DROP")
    assert invalid == 2 and all("privileged" in r for r in base[invalid + 1:-1])
    egress = next(c for c in states["db"].table("ipv4").chains if c.name == "NETPOL-EGRESS").rules
    assert "-m conntrack --ctstate INVALID -j DROP" not in egress  # db is not isolated for egress
    web = [r for c in states["web"].table("ipv4").chains for r in c.rules]
    assert not [r for r in web if "INVALID" in r]  # nothing isolates web: its own firewall decides


def test_a_resolver_in_the_fleet_keeps_ingress_dns_from_the_fleet_on_that_host_only():
    """dns-udp/dns-tcp are egress; a deny-all on the resolver host would cut them (issue 12.5)."""
    variables = {"netpol_dns_resolvers": ["10.0.1.2", "192.0.2.53"], "netpol_node_addresses": ["10.0.1.1", "10.0.1.2"]}
    rules = rules_from_vars(variables)
    server = [r for r in rules if r.name.startswith("dns-server-")]
    assert [(r.name, r.direction, r.protocol, r.cidrs, r.local_cidrs) for r in server] == [
        ("dns-server-udp", "ingress", "UDP", ("10.0.1.1/32", "10.0.1.2/32"), ("10.0.1.2/32",)),
        ("dns-server-tcp", "ingress", "TCP", ("10.0.1.1/32", "10.0.1.2/32"), ("10.0.1.2/32",)),
    ]
    drawn = policies(policy("shop", "db", {"podSelector": {}, "ingress": []}))
    states = compile_fleet(fleet(), drawn, CompileOptions(privileged=rules))
    base = next(c for c in states["db"].table("ipv4").chains if c.name == "NETPOL-INGRESS").rules
    assert '-s 10.0.1.1/32 -d 10.0.1.2/32 -p udp -m udp --dport 53 -m comment --comment "privileged dns-server-udp" ' \
        '-j RETURN' in base
    v6 = [r for c in states["db"].table("ipv6").chains for r in c.rules]
    assert not [r for r in v6 if "dns-server" in r]  # an IPv4 resolver opens nothing in ip6tables
    assert not [r for r in rules_from_vars({"netpol_node_addresses": ["10.0.1.2"]}) if "server" in r.name]


def test_zero_prefix_is_split_and_excepts_are_nomatch():
    drawn = policies(*GOLDEN_CASES["ipblock_except_and_zero"])
    sets = compile_fleet(fleet(), drawn)["db"].sets
    entries = {(m.entry, m.nomatch) for s in sets for m in s.members}
    assert {("0.0.0.0/1", False), ("128.0.0.0/1", False), ("10.0.0.0/8", True)} <= entries
    assert len(sets) == 2 and all(s.type == "hash:net" for s in sets)


def test_many_ports_share_multiport_within_its_fifteen_slots():
    ports = [{"port": p} for p in range(1000, 1040, 2)]  # 20 ports
    drawn = policies(policy("shop", "db", {"podSelector": select("db"), "ingress": [{"ports": ports}]}))
    rules = [r for c in compile_fleet(fleet(), drawn)["db"].table("ipv4").chains for r in c.rules if "multiport" in r]
    assert len(rules) == 2
    assert rules[0].startswith("-p tcp -m multiport --dports 1000,1002,")


def test_log_prefix_and_comments_are_clamped():
    long_name = "x" * 63
    inventory = {"w" * 40: dict(INVENTORY["db"], netpol_namespace="n" * 60)}
    drawn = policies(policy("n" * 60, long_name, {"podSelector": {}, "ingress": [{"ports": [{"port": 1}]}]}))
    state = compile_fleet(fleet(inventory), drawn, CompileOptions(log=LogOptions()))["w" * 40]
    rules = [r for c in state.table("ipv4").chains for r in c.rules]
    nflog = next(r for r in rules if "NFLOG" in r)
    prefix = nflog.split('--nflog-prefix "')[1].split('"')[0]
    assert len(prefix) <= 63 and prefix.startswith("netpol drop ingress")


def test_privileged_rules_split_by_family_before_dispatch():
    from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import PrivilegedRule

    options = CompileOptions(privileged=(PrivilegedRule("mgmt", "ingress", "TCP", (22, 22), ("192.0.2.0/24", "2001:db8::/32")),
                                         PrivilegedRule("nd", "egress", "ICMPV6", icmpv6_types=(135,))))
    state = compile_fleet(fleet(), policies(policy("shop", "deny", {"podSelector": {}})), options)["db"]
    v4 = {c.name: c.rules for c in state.table("ipv4").chains}
    v6 = {c.name: c.rules for c in state.table("ipv6").chains}
    assert '-s 192.0.2.0/24 -p tcp -m tcp --dport 22 -m comment --comment "privileged mgmt" -j RETURN' in v4["NETPOL-INGRESS"]
    assert '-s 2001:db8::/32 -p tcp -m tcp --dport 22 -m comment --comment "privileged mgmt" -j RETURN' in v6["NETPOL-INGRESS"]
    assert v4["NETPOL-INGRESS"][-1].startswith("-j NETPOL-I-")
    assert not [r for r in v4["NETPOL-EGRESS"] if "icmp" in r]
    assert '-p ipv6-icmp -m icmp6 --icmpv6-type 135 -m comment --comment "privileged nd" -j RETURN' in v6["NETPOL-EGRESS"]


def test_unisolated_host_gets_only_the_base_chains():
    state = compile_fleet(fleet(), ())["web"]
    assert [c.name for c in state.table("ipv4").chains] == ["NETPOL-INGRESS", "NETPOL-EGRESS"]
    assert state.table("ipv4").chains[0].rules == (
        '-i lo -m comment --comment "netpol ingress entry chain of this host" -j RETURN',
        "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN")
    assert [(j.chain, j.target, j.position) for j in state.table("ipv6").jumps] == [
        ("INPUT", "NETPOL-INGRESS", 1), ("OUTPUT", "NETPOL-EGRESS", 1)]


@pytest.mark.parametrize("given, saved", [  # right column: what iptables-save printed on this kernel
    ("10/min", "10/min"), ("10/minute", "10/min"), ("10/m", "10/min"), ("2/s", "2/sec"), ("7", "7/sec"),
    ("60/min", "1/sec"), ("120/hour", "2/min"), ("24/day", "1/hour"), ("3/h", "3/hour"), ("90/min", "90/min"),
])
def test_log_rate_is_written_as_the_kernel_prints_it(given, saved):
    from ansible_collections.netpol.fleet.plugins.module_utils.engine.compile import limit_text

    assert limit_text(given) == saved


@pytest.mark.parametrize("bad", ["0/min", "ten/min", "5/fortnight", "5/"])
def test_a_bad_log_rate_is_refused(bad):
    from ansible_collections.netpol.fleet.plugins.module_utils.engine.compile import limit_text

    with pytest.raises(ValueError):
        limit_text(bad)


def test_a_host_outside_the_fleet_gets_only_base_chains():
    state = compile_fleet(fleet(), policies(policy("shop", "deny", {"podSelector": {}})), OPTIONS, hosts=["bastion"])["bastion"]
    assert state.sets == () and [c.name for c in state.table("ipv6").chains] == ["NETPOL-INGRESS", "NETPOL-EGRESS"]


def test_several_workloads_on_one_host_are_dispatched_by_address():
    """The bridge-mode seam: each isolated workload's chain is entered by its own address only."""
    the_fleet = fleet()
    shared = dataclasses.replace(the_fleet, workloads=tuple(
        dataclasses.replace(w, host="hv1") if w.name in ("web", "db") else w for w in the_fleet.workloads))
    drawn = policies(policy("shop", "db", {"podSelector": select("db"), "ingress": [{"ports": [{"port": 5432}]}]}))
    state = compile_fleet(shared, drawn)["hv1"]
    ingress = state.table("ipv4").chains[0]
    assert [r for r in ingress.rules if "NETPOL-I-" in r] == ["-d 10.0.1.2/32 -j %s" % state.table("ipv4").chains[1].name]
    evaluator = Evaluator(state)
    to = dict(family=4, direction="ingress", src="10.0.3.1", protocol="TCP", dport=80)
    assert evaluator.evaluate(Packet(dst="10.0.1.1", **to)).allowed  # web is not isolated
    assert not evaluator.evaluate(Packet(dst="10.0.1.2", **to)).allowed


def test_privileged_addresses_are_written_as_the_kernel_prints_them():
    from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import PrivilegedRule

    options = CompileOptions(privileged=(PrivilegedRule("m", "egress", "ALL", (53, 53), ("10.0.0.7/24", "FD00::1")),))
    state = compile_fleet(fleet(), (), options)["db"]
    v4 = [r for r in state.table("ipv4").chains[1].rules if "privileged" in r]
    v6 = [r for r in state.table("ipv6").chains[1].rules if "privileged" in r]
    assert [r.split(" -m comment")[0] for r in v4] == [
        "-d 10.0.0.0/24 -p tcp -m tcp --dport 53", "-d 10.0.0.0/24 -p udp -m udp --dport 53",
        "-d 10.0.0.0/24 -p sctp -m sctp --dport 53"]
    assert v6[0].startswith("-d fd00::1/128 -p tcp")


def test_output_does_not_depend_on_the_interpreter_hash_seed():
    """Each play compiles in a new process: set and dict orders must never leak into the state."""
    import os
    import subprocess
    import sys

    script = (
        "import json, sys; sys.path[:0] = %r\n"
        "from engine_cases import OPTIONS, fleet, policies\n"
        "from test_compile import GOLDEN_CASES, compile_fleet\n"
        "drawn = policies(*[m for ms in GOLDEN_CASES.values() for m in ms])\n"
        "print(json.dumps({h: s.to_dict() for h, s in compile_fleet(fleet(), drawn, OPTIONS).items()}))\n"
    ) % ([str(Path(__file__).parent)] + sys.path,)
    outputs = {
        subprocess.run([sys.executable, "-c", script], env=dict(os.environ, PYTHONHASHSEED=seed),
                       capture_output=True, text=True, check=True).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1


def test_allowed_addresses_of_a_vm_never_widen_peer_sets():
    # Allowed-address pairs let a VM's port send from more sources (bridge/antispoof.py); a policy
    # that admits the VM must still admit only its own addresses (a 0.0.0.0/0 pair once did in Neutron).
    vm = {"name": "vm1", "namespace": "shop", "labels": {"app": "web"}, "addresses": ["10.0.5.5"],
          "interface": "vnet0", "mac": "52:54:00:00:05:05", "allowed_addresses": ["10.0.9.9", "10.0.0.0/8"]}
    inventory = dict(INVENTORY, hv={"netpol_addresses": ["192.0.2.9"], "netpol_workloads": [vm]})
    drawn = policies(policy("shop", "db", {"podSelector": select("db"), "ingress": [{"from": [{"podSelector": select("web")}]}]}))
    members = {m.entry for s in compile_fleet(fleet(inventory), drawn, hosts=["db"])["db"].sets for m in s.members}
    assert "10.0.5.5" in members and "10.0.1.1" in members
    assert not members & {"10.0.9.9", "10.0.0.0/8"}


@pytest.mark.parametrize("case", sorted(GOLDEN_CASES))
def test_every_owned_set_and_chain_says_what_its_hashed_name_stands_for(case):
    """In the kernel, not a state file: a set's first member carries the key its name is the hash of,
    a chain's first rule a comment naming its workload and policies (or the host's entry chain)."""
    for state in compile_fleet(fleet(), policies(*GOLDEN_CASES[case]), OPTIONS, hosts=["web", "db"]).values():
        for ipset in state.sets:
            label = ipset.members[0].comment
            assert set_name(6 if ipset.family == "inet6" else 4, label) == ipset.name
            assert len(label) < LABEL_MAX and not [m for m in ipset.members[1:] if m.comment]
        for table in state.tables:
            for chain in table.chains:
                label = rule_comment(chain.rules[0])
                assert label.startswith("netpol ") and len(label) < LABEL_MAX, (chain.name, chain.rules[0])
                if chain.name.startswith("NETPOL-I-"):
                    assert label.startswith("netpol ingress of workload shop/") and ": policies shop/" in label
