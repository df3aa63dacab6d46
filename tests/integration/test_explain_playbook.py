# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/explain.yml on enforced namespaces: the simulator's deciding rule per family and
side, and with measure=true the rule whose kernel hit counter a real probe moved. No host changes."""

from __future__ import annotations

import re
import subprocess
from typing import Dict

from conftest import run_playbook, session_prefix
from test_verify import recap_changed

POLICY = {
    "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
    "metadata": {"name": "db-from-api", "namespace": "shop"},
    "spec": {"podSelector": {"matchLabels": {"app": "db"}},
             "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}}], "ports": [{"port": "pg"}]}]},
}
# The hosts declare netpol_addresses: no facts needed.
QUICK = ("-e", "netpol_gather_facts=false")
HOSTS = {
    "web": {"netpol_namespace": "shop", "netpol_labels": {"app": "web"},
            "netpol_addresses": ["10.81.0.1/24", "fd51::1/64"]},
    "api": {"netpol_namespace": "shop", "netpol_labels": {"app": "api"},
            "netpol_addresses": ["10.81.0.2/24", "fd51::2/64"]},
    "db": {"netpol_namespace": "shop", "netpol_labels": {"app": "db"},
           "netpol_addresses": ["10.81.0.3/24", "fd51::3/64"], "netpol_ports": [{"name": "pg", "port": 5432}]},
}


def kernel_state(host: str) -> str:
    """Rules (without counters) and sets of a host: what explain must leave as it was."""
    def run(*argv: str) -> str:
        return subprocess.run(["ip", "netns", "exec", host, *argv], check=True, capture_output=True, text=True).stdout
    rules = "".join(run(tool) for tool in ("iptables-save", "ip6tables-save"))
    return "\n".join(line for line in rules.splitlines() if not line.startswith("#")) + run("ipset", "save")


def explanation(stdout: str) -> str:
    """The lines of the 'Show the explanation' task's msg, unquoted."""
    block = stdout[stdout.index("Show the explanation"):]
    return "\n".join(re.findall(r'^\s+"(.*)",?$', block[:block.index("\n}")], re.M)).replace('\\"', '"')


def test_explain_names_the_deciding_rules_and_the_kernel_agrees(make_lab) -> None:
    prefix = session_prefix("npx", "e")
    lab = make_lab(prefix, HOSTS, {"netpol_namespaces": {"shop": {}}, "netpol_policies": [POLICY]})
    web, api, db = lab.hosts
    run_playbook("playbooks/site.yml", lab.inventory)
    before: Dict[str, str] = {host: kernel_state(host) for host in lab.hosts}

    denied = run_playbook("playbooks/explain.yml", lab.inventory, "-e", "src=%s" % web, "-e", "dst=%s" % db,
                          "-e", "port=5432", *QUICK)
    text = explanation(denied.stdout)
    assert text.splitlines()[:4] == [
        "%s -> %s tcp/5432" % (web, db),
        "IPv4 10.81.0.1 -> 10.81.0.3 tcp/5432: DENIED",
        "  egress  at %s (shop/%s): allowed, not isolated for egress" % (web, web),
        "  ingress at %s (shop/%s): DENIED, isolated for ingress by shop/db-from-api; no rule matched" % (db, db),
    ]
    assert "IPv6 fd51::1 -> fd51::3 tcp/5432: DENIED" in text and "probe:" not in text

    measured = run_playbook("playbooks/explain.yml", lab.inventory, "-e", "src=%s" % web, "-e", "dst=%s" % db,
                            "-e", "port=5432", "-e", "measure=true", *QUICK)
    text = explanation(measured.stdout)
    assert text.count("  probe:  blocked (timeout), as expected") == 2
    assert text.count('  kernel ingress at %s: DROP "shop/%s isolated for ingress"' % (db, db)) == 2
    assert text.count("  kernel egress  at %s: no rule of ours decided" % web) == 2
    assert "NOT AS EXPECTED" not in text and "EXPECTED " not in text

    allowed = run_playbook("playbooks/explain.yml", lab.inventory, "-e", "src=%s" % api, "-e", "dst=shop/%s" % db,
                           "-e", "port=5432", "-e", "protocol=tcp", "-e", "measure=true", *QUICK)
    text = explanation(allowed.stdout)
    assert text.count("  ingress at %s (shop/%s): allowed, allowed by shop/db-from-api ingress[0]" % (db, db)) == 2
    assert text.count("  probe:  reachable (connected), as expected") == 2
    assert text.count('  kernel ingress at %s: RETURN "shop/db-from-api ingress[0]"' % db) == 2

    # explain changed nothing: no task reported a change, rules and sets are as they were
    for run in (denied, measured, allowed):
        assert set(recap_changed(run.stdout).values()) == {0}
    assert {host: kernel_state(host) for host in lab.hosts} == before


def test_explain_refuses_what_it_cannot_answer(make_lab) -> None:
    prefix = session_prefix("npx", "r")
    lab = make_lab(prefix, {"a": HOSTS["web"]}, {"netpol_namespaces": {"shop": {}}})
    missing = run_playbook("playbooks/explain.yml", lab.inventory, "-e", "src=%sa" % prefix, check=False)
    assert missing.returncode != 0 and "explain needs -e src=" in missing.stdout
    unknown = run_playbook("playbooks/explain.yml", lab.inventory, "-e", "src=nobody", "-e", "dst=%sa" % prefix,
                           "-e", "port=80", check=False)
    assert unknown.returncode != 0 and "explain: src='nobody' is no workload" in unknown.stdout
    outside = run_playbook("playbooks/explain.yml", lab.inventory, "-e", "src=192.0.2.1", "-e", "dst=%sa" % prefix,
                           "-e", "port=80", "-e", "measure=true", check=False)
    assert outside.returncode != 0 and "measure=true needs src to be an inventory host" in outside.stdout
    sctp = run_playbook("playbooks/explain.yml", lab.inventory, "-e", "src=192.0.2.1", "-e", "dst=%sa" % prefix,
                        "-e", "port=80", "-e", "protocol=sctp", "-e", "measure=true", check=False)
    assert sctp.returncode != 0 and "SCTP is not probed" in sctp.stdout
    check = run_playbook("playbooks/explain.yml", lab.inventory, "-e", "src=%sa" % prefix, "-e", "dst=192.0.2.1",
                         "-e", "port=80", "-e", "measure=true", "--check", check=False)
    assert check.returncode != 0 and "measure=true needs a real run" in check.stdout
