# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/lab.yml builds the inventory's hosts as namespaces on a bridge, idempotently,
converges on inventory changes, tears down to nothing and refuses bad inventories up front."""

from __future__ import annotations

import errno
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import LAB_PLAYBOOK, netns_names, run_playbook, session_prefix, write_lab_inventory

L1, L2, L3, L4 = (session_prefix("npa", name) for name in ("l1", "l2", "l3", "l4"))

CONNECT = """
import errno, socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
with socket.socket(family, socket.SOCK_STREAM) as s:
    s.settimeout(2)
    sys.exit(s.connect_ex((sys.argv[1], 9)))
"""


def answers(namespace: str, address: str) -> bool:
    """The address answers from inside namespace: a TCP reset (nothing listens on port 9) came back."""
    run = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-c", CONNECT, address], check=False)
    return run.returncode == errno.ECONNREFUSED


def changed_count(output: str) -> int:
    recap = [line for line in output.splitlines() if line.startswith("localhost")][-1]
    return int(recap.split("changed=")[1].split()[0])


def two_hosts(**extra_b) -> dict:
    return {"a": {"netpol_addresses": ["10.78.0.1/24", "fd78::1/64"]},
            "b": {"netpol_addresses": ["10.78.0.2", "fd78::2"], **extra_b}}


def test_embedded_lab_builds_every_host_reachable_over_both_families(make_lab):
    lab = make_lab(L1)
    assert len(lab.hosts) >= 8
    assert lab.namespaces() == sorted(lab.hosts + [L1 + "sw"])
    web1 = L1 + "web1"
    others = ["10.42.0.%d" % n for n in (12, 13, 21, 22, 31, 41, 42)] + ["fd42::22", "fd42::42"]
    with ThreadPoolExecutor(len(others)) as pool:
        assert list(pool.map(lambda address: answers(web1, address), others)) == [True] * len(others)


def test_second_run_changes_nothing_and_absent_leaves_no_namespace(make_lab):
    lab = make_lab(L2, two_hosts())
    assert changed_count(run_playbook(LAB_PLAYBOOK, lab.inventory).stdout) == 0
    assert changed_count(run_playbook(LAB_PLAYBOOK, lab.inventory, "-e", "state=absent").stdout) == 1
    assert netns_names(L2) == []
    assert changed_count(run_playbook(LAB_PLAYBOOK, lab.inventory, "-e", "state=absent").stdout) == 0


def test_lab_converges_on_inventory_changes(make_lab, tmp_path):
    lab = make_lab(L3, two_hosts())
    subprocess.run(["ip", "-n", L3 + "a", "address", "add", "10.78.0.99/24", "dev", "eth0"], check=True)
    check = run_playbook(LAB_PLAYBOOK, lab.inventory, "--check", "-v").stdout
    assert "ip -n %sa address del 10.78.0.99/24 dev eth0" % L3 in check
    inventory = write_lab_inventory(tmp_path / "smaller", L3, {"a": two_hosts()["a"]})
    run_playbook(LAB_PLAYBOOK, inventory)
    assert netns_names(L3) == [L3 + "a", L3 + "sw"]
    shown = subprocess.run(["ip", "-n", L3 + "a", "-brief", "address", "show", "dev", "eth0"],
                           capture_output=True, text=True, check=True).stdout
    assert "10.78.0.99" not in shown and "10.78.0.1/24" in shown


@pytest.mark.parametrize("hosts, lab_vars, message", [
    pytest.param({"a": {"netpol_labels": {"app": "web"}}}, {},
                 "host {p}a: netpol_addresses is missing", id="no-addresses"),
    pytest.param({**two_hosts(), "c": {"netpol_addresses": ["10.78.0.3/24", "fd78::1/64"]}}, {},
                 "host {p}c: netpol_addresses: fd78::1 is also an address of host {p}a", id="duplicate"),
    pytest.param({"a": {"netpol_addresses": ["10.78.0.300/24"]}}, {},
                 "host {p}a: netpol_addresses: '10.78.0.300/24' is not an IPv4 or IPv6 address", id="bad-address"),
    pytest.param({"a-much-too-long": {"netpol_addresses": ["10.78.0.1/24"]}}, {},
                 "host {p}a-much-too-long: ansible_host '{p}a-much-too-long' is 24 characters", id="long-name"),
    pytest.param(two_hosts(), {"lab_ip_executable": "/nonexistent/ip"},
                 "lab_ip_executable '/nonexistent/ip'", id="no-ip"),
])
def test_bad_inventory_stops_before_any_change_naming_host_and_field(lab_root, netns_cleanup, tmp_path,
                                                                     hosts, lab_vars, message):
    netns_cleanup(L4)
    inventory = write_lab_inventory(tmp_path, L4, hosts, lab_vars)
    result = run_playbook(LAB_PLAYBOOK, inventory, check=False)
    assert result.returncode != 0
    assert message.format(p=L4) in result.stdout + result.stderr
    assert netns_names(L4) == []
