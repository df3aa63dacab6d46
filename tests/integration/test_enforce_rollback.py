# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lock-out safety: a change the controller cannot confirm rolls itself back on the host."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

from conftest import run_playbook
from test_enforce_e2e import session_token

DENY_ALL = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "deny-all", "namespace": "t"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}
HOST = {"netpol_namespace": "t", "netpol_addresses": ["10.78.0.1/24", "fd78::1/64"]}


def filter_tables(ns: str) -> str:
    return "\n".join(subprocess.run(["ip", "netns", "exec", ns, tool, "-t", "filter"], check=True,
                                    capture_output=True, text=True).stdout.split("\n", 1)[1].rsplit("#", 1)[0]
                     for tool in ("iptables-save", "ip6tables-save"))


def wait_for(path: Path, cap: float = 120.0) -> bool:
    """The timer fires on its own; wait for its mark (an event, not a duration we assert)."""
    deadline = time.monotonic() + cap
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return path.exists()


def owned_sets(ns: str) -> str:
    save = subprocess.run(["ip", "netns", "exec", ns, "ipset", "save"], check=True, capture_output=True, text=True)
    # initval is the kernel's random hash seed, different for every set it creates; members come
    # out in hash order, which differs between two sets of the same members
    return "\n".join(sorted(re.sub(r" initval 0x[0-9a-f]+", "", line) for line in save.stdout.splitlines()
                            if line.split()[1].startswith("netpol")))


def in_ns(ns: str, *argv: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns, *argv], check=True)


def test_unconfirmed_change_is_rolled_back_and_a_confirmed_one_stays(make_lab, tmp_path):
    lab = make_lab("npe%sr-" % session_token(), {"a": HOST})
    ns = lab.hosts[0]
    in_ns(ns, "iptables", "-A", "INPUT", "-s", "192.0.2.1/32", "-j", "ACCEPT")
    before, sets_before = filter_tables(ns), owned_sets(ns)
    policies = tmp_path / "p.json"
    policies.write_text(json.dumps({"netpol_policies": [DENY_ALL]}))
    rollback_dir = tmp_path / "rollback"

    # A confirmation window of 0 s cannot succeed: exactly what a cut controller sees. The timer
    # must outlast the apply (it restores what was there when it was armed).
    failed = run_playbook("playbooks/site.yml", lab.inventory, "-e", "@%s" % policies,
                          "-e", "netpol_rollback=always", "-e", "netpol_rollback_timeout=20",
                          "-e", "netpol_rollback_confirm_timeout=0",
                          "-e", "netpol_rollback_dir=%s" % rollback_dir, check=False)
    assert failed.returncode != 0
    assert "puts back the collection's previous chains, jumps and sets by itself" in failed.stdout
    assert "NETPOL-INGRESS" in filter_tables(ns)  # applied, not yet confirmed
    # Someone else's rules, added during the confirmation window, are not the collection's to undo.
    in_ns(ns, "iptables", "-I", "INPUT", "1", "-s", "192.0.2.2/32", "-j", "ACCEPT")
    in_ns(ns, "ip6tables", "-A", "OUTPUT", "-d", "2001:db8::2/128", "-j", "ACCEPT")
    assert wait_for(rollback_dir / "owned.json.rolled-back"), failed.stdout
    after = filter_tables(ns)
    assert "NETPOL-" not in after and owned_sets(ns) == sets_before
    assert "-A INPUT -s 192.0.2.2/32 -j ACCEPT" in after and "-A OUTPUT -d 2001:db8::2/128 -j ACCEPT" in after
    in_ns(ns, "iptables", "-D", "INPUT", "-s", "192.0.2.2/32", "-j", "ACCEPT")
    in_ns(ns, "ip6tables", "-D", "OUTPUT", "-d", "2001:db8::2/128", "-j", "ACCEPT")
    assert filter_tables(ns) == before

    confirmed = run_playbook("playbooks/site.yml", lab.inventory, "-e", "@%s" % policies,
                             "-e", "netpol_rollback=always", "-e", "netpol_rollback_dir=%s" % rollback_dir)
    assert "NETPOL-INGRESS" in filter_tables(ns)
    assert not (rollback_dir / "owned.json").exists(), confirmed.stdout  # disarmed


def test_a_rollback_puts_back_the_previous_policy_and_its_sets(make_lab, tmp_path):
    """Rolling back a change between two policies restores the old chains and the old sets' members."""
    lab = make_lab("npe%sq-" % session_token(), {"a": HOST, "b": dict(HOST, netpol_addresses=["10.78.0.2/24"])})
    ns = lab.hosts[0]
    allow_b = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "from-all", "namespace": "t"},
               "spec": {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}}
    first = tmp_path / "first.json"
    first.write_text(json.dumps({"netpol_policies": [allow_b]}))
    run_playbook("playbooks/site.yml", lab.inventory, "-e", "@%s" % first, "--limit", ns)
    before, sets_before = filter_tables(ns), owned_sets(ns)
    assert "netpol4-" in sets_before
    second = tmp_path / "second.json"
    second.write_text(json.dumps({"netpol_policies": [DENY_ALL]}))
    rollback_dir = tmp_path / "rollback"
    failed = run_playbook("playbooks/site.yml", lab.inventory, "-e", "@%s" % second, "--limit", ns,
                          "-e", "netpol_rollback=always", "-e", "netpol_rollback_timeout=20",
                          "-e", "netpol_rollback_confirm_timeout=0",
                          "-e", "netpol_rollback_dir=%s" % rollback_dir, check=False)
    assert failed.returncode != 0
    assert owned_sets(ns) != sets_before  # the deny-all uses no set: the purge destroyed them
    assert wait_for(rollback_dir / "owned.json.rolled-back"), failed.stdout
    assert filter_tables(ns) == before and owned_sets(ns) == sets_before
