# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""netpol.fleet.ebtables against the real ebtables-nft, one network namespace per test.

Each test runs the module with ansible-playbook inside `ip netns exec npe...` (connection local) and
judges the result by what ebtables-save prints; a bridge CNI's foreign state (a chain holding an
--among-src rule, a rule in nat PREROUTING, a filter rule) must come through byte-identical.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
ANSIBLE_PLAYBOOK = str(Path(PYTHON).parent / "ansible-playbook")

FOREIGN = [
    "ebtables -t nat -N CNI-HOSTPORT",
    "ebtables -t nat -A CNI-HOSTPORT --among-src 2:0:a:0:0:9 -j ACCEPT",
    "ebtables -t nat -A PREROUTING -i cni0 -j CNI-HOSTPORT",
    "ebtables -t nat -A POSTROUTING -o cni0 -j ACCEPT",
    "ebtables -t filter -A FORWARD -p IPv4 --ip-src 10.9.9.9 -j DROP",
]
VM1 = {"name": "NETPOL-VM1", "rules": [
    "-s ! 2:0:A:0:0:1 -j DROP",
    "-p ARP --arp-mac-src 02:00:0a:00:00:01 --arp-ip-src 10.0.0.1 -j RETURN",
    "-p 0x0800 --ip-src 10.0.0.1/32 -j RETURN",
    "--limit 5/minute --limit-burst 10 --nflog-group 5 --nflog-prefix 'netpol L2 deny vm1' -j DROP",
    "-j DROP",
]}
VM2 = {"name": "NETPOL-VM2", "rules": ["--among-src 2:0:a:0:0:2 -j RETURN", "-j DROP"]}
ARGS = {"table": "nat", "chains": [VM1, VM2], "jumps": [
    {"chain": "PREROUTING", "target": "NETPOL-VM1", "match": "-i vm1"},
    {"chain": "PREROUTING", "target": "NETPOL-VM2", "match": "-i vm2", "position": 9},
]}


@pytest.fixture
def ns():
    name = "npem-%s" % uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def sh(ns: str, command: str) -> str:
    done = subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", command], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def save(ns: str, table: str = "nat") -> str:
    return "".join(line for line in sh(ns, "ebtables-save -t %s" % table).splitlines(True) if not line.startswith("#"))


def world(ns: str) -> Tuple[str, str]:
    return save(ns, "nat"), save(ns, "filter")


def without_ours(text: str) -> str:
    return "".join(line for line in text.splitlines(True) if "NETPOL-" not in line)


def play(ns: str, tmp_path: Path, args: Dict[str, Any], *flags: str, path: str = "") -> Tuple[Dict[str, Any], str]:
    """Run the module once in the namespace; its registered result and ansible's output."""
    result = tmp_path / ("result-%s.json" % uuid.uuid4().hex[:6])
    tasks = [
        {"netpol.fleet.ebtables": args, "register": "r", "ignore_errors": True},
        {"ansible.builtin.copy": {"content": "{{ r | to_json }}", "dest": str(result)}, "check_mode": False, "diff": False},
    ]
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1")
    if path:
        env["PATH"] = "%s:%s" % (path, env["PATH"])
    argv = ["ip", "netns", "exec", ns, ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local"]
    argv += ["-e", "ansible_python_interpreter=%s" % PYTHON, str(playbook)] + list(flags)
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(result.read_text()), done.stdout


def shims(tmp_path: Path, ns: str, after_restore: str = "") -> str:
    """A PATH directory whose ebtables-restore and unshare log each call and then run the real tool.
    `after_restore` runs after a real (not scratch) restore: another writer changing the table."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "calls"
    (bin_dir / "unshare").write_text('#!/bin/sh\necho "unshare" >> %s\nexec /usr/bin/unshare "$@"\n' % log)
    (bin_dir / "ebtables-restore").write_text(
        '#!/bin/sh\n[ "$(ip netns identify)" = "%s" ] || exec /usr/sbin/ebtables-restore "$@"\n'
        'echo "ebtables-restore $*" >> %s\n/usr/sbin/ebtables-restore "$@" || exit $?\n%s\n' % (ns, log, after_restore)
    )
    for shim in bin_dir.iterdir():
        shim.chmod(0o755)
    return str(bin_dir)


def calls(tmp_path: Path) -> List[str]:
    path = tmp_path / "calls"
    return path.read_text().splitlines() if path.exists() else []


def test_create_noop_change_remove_leave_the_cni_state_alone(ns, tmp_path):
    sh(ns, "; ".join(FOREIGN))
    initial = world(ns)

    created = play(ns, tmp_path, ARGS)[0]
    assert not created.get("failed"), created.get("msg")
    assert created["changed"] and created["chains"]["created"] == ["NETPOL-VM1", "NETPOL-VM2"]
    nat = save(ns)
    assert "-A PREROUTING -i vm1 -j NETPOL-VM1\n-A PREROUTING -i cni0 -j CNI-HOSTPORT\n-A PREROUTING -i vm2 -j NETPOL-VM2\n" in nat
    assert ("-A NETPOL-VM1 -s ! 02:00:0a:00:00:01 -j DROP\n"
            "-A NETPOL-VM1 -p ARP --arp-ip-src 10.0.0.1 --arp-mac-src 02:00:0a:00:00:01 -j RETURN\n"
            "-A NETPOL-VM1 -p IPv4 --ip-src 10.0.0.1 -j RETURN\n"
            '-A NETPOL-VM1 --limit 5/min --limit-burst 10 --nflog-prefix "netpol L2 deny vm1" --nflog-group 5 -j DROP\n'
            "-A NETPOL-VM1 -j DROP\n") in nat
    assert without_ours(nat) == initial[0] and save(ns, "filter") == initial[1]

    path = shims(tmp_path, ns)
    again = play(ns, tmp_path, ARGS, path=path)[0]
    assert not again["changed"] and calls(tmp_path) == []  # read once, nothing written or tried

    changed_vm2 = dict(VM2, rules=["--among-src 2:0:a:0:0:2,2:0:a:0:0:3 -j RETURN", "-j DROP"])
    changed = play(ns, tmp_path, dict(ARGS, chains=[VM1, changed_vm2]), path=path)[0]
    assert changed["chains"] == {"created": [], "updated": ["NETPOL-VM2"], "removed": []}
    assert calls(tmp_path) == ["unshare", "ebtables-restore --noflush"]  # proven, then one transaction
    assert "-A NETPOL-VM2 --among-src 2:0:a:0:0:2,2:0:a:0:0:3 -j RETURN\n" in save(ns)

    removed = play(ns, tmp_path, {"table": "nat", "state": "absent"})[0]
    assert removed["chains"]["removed"] == ["NETPOL-VM1", "NETPOL-VM2"]
    assert world(ns) == initial
    assert not play(ns, tmp_path, {"table": "nat", "state": "absent"})[0]["changed"]


def test_check_mode_changes_nothing_and_diff_shows_each_chain(ns, tmp_path):
    play(ns, tmp_path, dict(ARGS, chains=[VM1, dict(VM2, rules=["-j RETURN"]), {"name": "NETPOL-OLD"}]))
    before = world(ns)
    result, output = play(ns, tmp_path, ARGS, "--check", "--diff")
    assert result["changed"] and world(ns) == before
    assert result["chains"] == {"created": [], "updated": ["NETPOL-VM2"], "removed": ["NETPOL-OLD"]}
    assert result["commands"].startswith("*nat\n:NETPOL-VM2 RETURN\n:NETPOL-OLD RETURN\n")
    assert "--- before: bridge nat NETPOL-VM2" in output
    lines = output.splitlines()
    for line in ("--A NETPOL-VM2 -j RETURN", "+-A NETPOL-VM2 --among-src 2:0:a:0:0:2 -j RETURN", "-:NETPOL-OLD"):
        assert line in lines


def test_a_failure_late_in_the_restore_leaves_the_previous_state(ns, tmp_path):
    sh(ns, "; ".join(FOREIGN))
    play(ns, tmp_path, ARGS)
    before = world(ns)
    # The real restore gets one more line that the kernel refuses at its end: nothing of it may stay.
    bin_dir = tmp_path / "failing"
    bin_dir.mkdir()
    (bin_dir / "ebtables-restore").write_text(
        '#!/bin/sh\n[ "$(ip netns identify)" = "%s" ] || exec /usr/sbin/ebtables-restore "$@"\n'
        "sed 's/^COMMIT$/-A NETPOL-VM1 -j NETPOL-MISSING\\nCOMMIT/' | /usr/sbin/ebtables-restore \"$@\"\n" % ns
    )
    (bin_dir / "ebtables-restore").chmod(0o755)
    result = play(ns, tmp_path, {"table": "nat", "state": "absent"}, path=str(bin_dir))[0]
    assert result["failed"] and "NETPOL-MISSING" in result["msg"]
    assert world(ns) == before


def test_another_writer_during_the_apply_is_rolled_back(ns, tmp_path):
    sh(ns, "; ".join(FOREIGN))
    play(ns, tmp_path, ARGS)
    before = world(ns)
    once = tmp_path / "written"  # the other writer strikes after our first restore only
    path = shims(tmp_path, ns, after_restore="[ -e %s ] || { touch %s; ebtables -t nat -A NETPOL-VM1 -j ACCEPT; }" % (once, once))
    result = play(ns, tmp_path, dict(ARGS, chains=[VM1, dict(VM2, rules=["-j DROP"])]), path=path)[0]
    assert result["failed"] and "NETPOL-VM1: 5 rules desired, kernel has 6" in result["msg"]
    assert world(ns) == before  # the snapshot of our chains is back, the CNI's untouched


def test_a_rule_ebtables_would_misprint_is_refused_before_the_table_is_touched(ns, tmp_path):
    sh(ns, "; ".join(FOREIGN))
    before = world(ns)
    bad = {"name": "NETPOL-VM1", "rules": ["-p IPv4 --ip-src 10.0.0.1 --limit 5/min --nflog-group 1 -j DROP"]}
    result = play(ns, tmp_path, {"table": "nat", "chains": [bad]})[0]
    assert result["failed"] and "kernel prints '-p IPv4 --ip-src 10.0.0.1 --nflog-group 1 -j DROP'" in result["msg"]
    assert world(ns) == before
    refused = play(ns, tmp_path, {"table": "nat", "chains": [dict(bad, rules=["-p IPv4 --bogus 3 -j DROP"])]})[0]
    assert refused["failed"] and "offending line: -A NETPOL-VM1 -p IPv4 --bogus 3 -j DROP" in refused["msg"]
    assert world(ns) == before


def test_filter_table_and_second_run_through_ansible_playbook(ns, tmp_path):
    args = {"table": "filter", "chains": [{"name": "NETPOL-FWD", "rules": ["-p IPv6 --ip6-src 2001:DB8::1/128 -j ACCEPT", "-j RETURN"]}],
            "jumps": [{"chain": "FORWARD", "target": "NETPOL-FWD"}]}
    sh(ns, "; ".join(FOREIGN))
    nat = save(ns)
    assert play(ns, tmp_path, args)[0]["changed"]
    assert "-A FORWARD -j NETPOL-FWD\n-A FORWARD -p IPv4 --ip-src 10.9.9.9 -j DROP\n" in save(ns, "filter")
    assert not play(ns, tmp_path, args)[0]["changed"]
    assert save(ns) == nat
