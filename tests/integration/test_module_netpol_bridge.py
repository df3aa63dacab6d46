# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""netpol.fleet.netpol_bridge against a real namespace's bridges, sysfs and ipset.

Each test runs the module with ansible-playbook inside `ip netns exec npk...` (connection local), in
a namespace whose global bridge-nf-call-* are 0 (as on Harvester), and judges by the kernel's files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
ANSIBLE_PLAYBOOK = str(Path(PYTHON).parent / "ansible-playbook")


def sh(ns: str, command: str) -> str:
    done = subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", command], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def ns():
    """br10 (flags 0, port vnet0), br20 (nf_call_iptables already 1), vnet9 on no bridge; a foreign set."""
    name = "npk%s" % uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        sh(name, "sysctl -qw net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0")
        for bridge in ("br10", "br20"):
            sh(name, "ip link add %s type bridge && ip link set %s up" % (bridge, bridge))
        sh(name, "echo 1 > /sys/class/net/br20/bridge/nf_call_iptables")
        sh(name, "ip link add vnet0 type veth peer name vnet0p && ip link set vnet0 master br10")
        sh(name, "ip link add vnet9 type veth peer name vnet9p")
        sh(name, "ipset create theirs hash:ip")
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def flags(ns: str) -> str:
    return sh(ns, "grep -H . /sys/class/net/br*/bridge/nf_call_ip*tables /proc/sys/net/bridge/bridge-nf-call-ip*tables "
                  "/proc/sys/net/bridge/bridge-nf-filter-vlan-tagged")


def play(ns: str, tmp_path: Path, args: Dict[str, Any], *options: str) -> Tuple[Dict[str, Any], str]:
    result = tmp_path / ("result-%s.json" % uuid.uuid4().hex[:6])
    tasks = [{"netpol.fleet.netpol_bridge": args, "register": "r", "ignore_errors": True},
             {"ansible.builtin.copy": {"content": "{{ r | to_json }}", "dest": str(result)}, "check_mode": False,
              "diff": False}]
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    argv = ["ip", "netns", "exec", ns, ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local",
            "-e", "ansible_python_interpreter=%s" % PYTHON, str(playbook)] + list(options)
    done = subprocess.run(argv, cwd=ROOT, env=dict(os.environ, ANSIBLE_NOCOLOR="1"), capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(result.read_text()), done.stdout


def test_query_reports_ports_and_global_switches_and_changes_nothing(ns, tmp_path):
    before = flags(ns)
    result = play(ns, tmp_path, {"state": "query", "ports": ["vnet0", "vnet9", "vnet7"]})[0]
    assert result["ports"] == {"vnet0": "br10", "vnet9": None} and result["missing"] == ["vnet7"]
    assert result["vlan_aware"] == [] and result["vlans"] == {}
    assert result["br_netfilter"] and result["global_flags"] == {"nf_call_iptables": 0, "nf_call_ip6tables": 0,
                                                                 "bridge-nf-filter-vlan-tagged": 0}
    assert not result["changed"] and flags(ns) == before


def test_present_switches_only_flags_that_were_off_check_and_diff_first_then_absent_puts_them_back(ns, tmp_path):
    before, foreign = flags(ns), sh(ns, "ipset save theirs")
    checked, out = play(ns, tmp_path, {"bridges": ["br10", "br20"]}, "--check", "--diff")
    assert checked["changed"] and flags(ns) == before
    assert checked["switched_on"] == ["net.bridge bridge-nf-filter-vlan-tagged", "br10 nf_call_iptables",
                                      "br10 nf_call_ip6tables", "br20 nf_call_ip6tables"]
    assert "-br10 nf_call_iptables=0" in out and "+br10 nf_call_iptables=1" in out
    applied = play(ns, tmp_path, {"bridges": ["br10", "br20"]})[0]
    assert applied["changed"] and applied["record"] == {"br10": ["nf_call_iptables", "nf_call_ip6tables"],
                                                        "br20": ["nf_call_ip6tables"],
                                                        "net.bridge": ["bridge-nf-filter-vlan-tagged"]}
    now = flags(ns)
    assert "br10/bridge/nf_call_iptables:1" in now and "br20/bridge/nf_call_ip6tables:1" in now
    assert "bridge-nf-call-iptables:0" in now  # the global switch is never touched
    assert 'comment "nf_call_iptables nf_call_ip6tables"' in sh(ns, "ipset save netpol-bridges")
    assert not play(ns, tmp_path, {"bridges": ["br10", "br20"]})[0]["changed"]
    narrowed = play(ns, tmp_path, {"bridges": ["br20"]})[0]  # br10 carries no managed port any more
    assert narrowed["switched_off"] == ["br10 nf_call_iptables", "br10 nf_call_ip6tables"]
    assert "br10/bridge/nf_call_iptables:0" in flags(ns)
    removed = play(ns, tmp_path, {"state": "absent"})[0]
    assert removed["changed"] and flags(ns) == before  # br20's nf_call_iptables was 1 before: still 1
    assert "netpol-bridges" not in sh(ns, "ipset list -n") and sh(ns, "ipset save theirs") == foreign
    assert not play(ns, tmp_path, {"state": "absent"})[0]["changed"]


def test_a_port_is_not_a_bridge(ns, tmp_path):
    result = play(ns, tmp_path, {"bridges": ["vnet0"]})[0]
    assert result["failed"] and "vnet0 is not a Linux bridge" in result["msg"]


def test_a_vlan_aware_bridge_is_reported_or_the_kernel_cannot_build_one(ns, tmp_path):
    """VLAN-aware bridges (vlan_filtering 1) are refused by the compile step; the query must see them and
    their ports' VLANs (on a kernel that builds one, test_uml_vlan_refusal does this in a UML guest)."""
    built = subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "add", "brv", "type", "bridge", "vlan_filtering", "1"],
                           capture_output=True, text=True, check=False)
    if built.returncode != 0 or sh(ns, "cat /sys/class/net/brv/bridge/vlan_filtering").strip() != "1":
        pytest.skip("this kernel cannot build a VLAN-aware bridge (vlan_filtering 1): %s"
                    % (built.stderr.strip() or "the flag stays 0"))
    sh(ns, "ip link add vnet5 type veth peer name vnet5p && ip link set vnet5 master brv")
    sh(ns, "bridge vlan add dev vnet5 vid 10 pvid untagged && bridge vlan del dev vnet5 vid 1")
    result = play(ns, tmp_path, {"state": "query", "ports": ["vnet0", "vnet5"]})[0]
    assert result["ports"] == {"vnet0": "br10", "vnet5": "brv"} and result["vlan_aware"] == ["brv"]
    assert result["vlans"] == {"vnet5": {"bridge": "brv", "pvid": 10, "untagged": [10], "tagged": []}}  # br10: none
