# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lock-out safety: a change the controller cannot confirm rolls itself back on the host."""

from __future__ import annotations

import json
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


def test_unconfirmed_change_is_rolled_back_and_a_confirmed_one_stays(make_lab, tmp_path):
    lab = make_lab("npe%sr-" % session_token(), {"a": HOST})
    ns = lab.hosts[0]
    subprocess.run(["ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-s", "192.0.2.1/32", "-j", "ACCEPT"],
                   check=True)
    before = filter_tables(ns)
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
    assert "restores its previous filter tables by itself" in failed.stdout
    assert "NETPOL-INGRESS" in filter_tables(ns)  # applied, not yet confirmed
    assert wait_for(rollback_dir / "rolled-back"), failed.stdout
    assert filter_tables(ns) == before

    confirmed = run_playbook("playbooks/site.yml", lab.inventory, "-e", "@%s" % policies,
                             "-e", "netpol_rollback=always", "-e", "netpol_rollback_dir=%s" % rollback_dir)
    assert "NETPOL-INGRESS" in filter_tables(ns)
    assert not (rollback_dir / "pid").exists(), confirmed.stdout  # disarmed
