# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""remove.yml on hosts that had no firewall at all: `--check --diff` shows exactly the sets and
chains the real run then removes, and afterwards `nft list ruleset` is as empty as before the first
enforce (iptables-nft created the tables; remove deletes them once they hold nothing)."""

from __future__ import annotations

import re
import subprocess
from typing import List

from conftest import run_playbook, session_prefix

HOSTS = {
    "web": {"netpol_namespace": "shop", "netpol_labels": {"app": "web"},
            "netpol_addresses": ["10.94.0.1/24", "fd94::1/64"]},
    "db": {"netpol_namespace": "shop", "netpol_labels": {"app": "db"},
           "netpol_addresses": ["10.94.0.2/24", "fd94::2/64"]},
}
DB_FROM_WEB = {
    "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
    "metadata": {"name": "db-from-web", "namespace": "shop"},
    "spec": {"podSelector": {"matchLabels": {"app": "db"}},
             "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 5432}]}]},
}
FAST = ("-e", "netpol_gather_facts=false", "-e", "netpol_report=false")


def in_host(host: str, *argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", host, *argv], check=True, capture_output=True, text=True).stdout


def kernel(host: str) -> str:
    """Everything a user would compare: the whole nf_tables ruleset and every ipset (packet counters
    left out: IPv6 neighbour discovery moves them whatever we do)."""
    ruleset = re.sub(r"counter packets \d+ bytes \d+", "counter", in_host(host, "nft", "list", "ruleset"))
    return ruleset + in_host(host, "ipset", "save")


def our_sets(host: str) -> List[str]:
    return sorted(name for name in in_host(host, "ipset", "list", "-n").split() if name.startswith("netpol"))


def test_remove_check_diff_shows_what_the_real_run_removes_and_leaves_no_table(make_lab):
    lab = make_lab(session_prefix("npr", "rm"), HOSTS, {"netpol_policies": [DB_FROM_WEB]})
    assert {host: kernel(host) for host in lab.hosts} == {host: "" for host in lab.hosts}  # no tables at all

    run_playbook("playbooks/site.yml", lab.inventory, *FAST)
    enforced = {host: kernel(host) for host in lab.hosts}
    sets = {host: our_sets(host) for host in lab.hosts}
    assert sets[lab.prefix + "db"] and all("NETPOL-" in text for text in enforced.values())

    check = run_playbook("playbooks/remove.yml", lab.inventory, "--check", "--diff").stdout
    assert "still referenced" not in check
    shown = sorted(set(re.findall(r"^-create (netpol[46]-\S+) ", check, re.M)))  # the diff's "before" lines
    assert shown == sorted(name for names in sets.values() for name in names), check
    assert check.count("(deleted)") == 2 * len(lab.hosts)  # ipv4 and ipv6 filter table of each host
    assert {host: kernel(host) for host in lab.hosts} == enforced  # check mode changed nothing

    run_playbook("playbooks/remove.yml", lab.inventory)
    assert {host: kernel(host) for host in lab.hosts} == {host: "" for host in lab.hosts}

    again = run_playbook("playbooks/remove.yml", lab.inventory, "--check", "--diff").stdout
    assert re.search(r"changed=0 ", again) and "changed=1" not in again and "changed=2" not in again
