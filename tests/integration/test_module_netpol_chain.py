# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""netpol.fleet.netpol_chain against the real kernel tools, one network namespace per test.

Each test runs the module with ansible-playbook inside `ip netns exec npn...` (connection local)
and judges the result by what iptables-save / ip6tables-save print, counters included.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import termios
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
    "ipset create mine hash:ip",
    "ipset add mine 10.9.9.9",
    "iptables -N FOO",
    "iptables -A FOO -p tcp -m tcp --dport 22 -m set --match-set mine src -j ACCEPT",
    "iptables -A INPUT -i lo -j FOO",
    "iptables -A OUTPUT -m comment --comment 'their rule' -j ACCEPT",
    "ip6tables -N FOO6",
    "ip6tables -A INPUT -j FOO6",
]
CHAIN_A = {"name": "NETPOL-A", "rules": ["-p tcp -m tcp --dport 80 -j RETURN", "-p tcp -j DROP"]}
CHAIN_B = {"name": "NETPOL-B", "rules": ["-s 10.0.0.1/32 -j NETPOL-A", '-m comment --comment "ns/pol ingress" -j RETURN']}
ARGS = {"chains": [CHAIN_A, CHAIN_B], "jumps": [{"chain": "INPUT", "target": "NETPOL-B"}]}
BOTH = {"family": "both", "chains": [CHAIN_A, dict(CHAIN_B, rules=["-p udp -j NETPOL-A"])], "jumps": ARGS["jumps"]}


@pytest.fixture
def ns():
    name = "npnm-%s" % uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        sh(name, "ip link set lo up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def sh(ns: str, command: str, stdin: str = "") -> str:
    done = subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", command], input=stdin, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def save(ns: str, tool: str = "iptables-save") -> str:
    """Everything the kernel holds, counters included, minus the timestamp comments."""
    return "".join(line for line in sh(ns, "%s -c" % tool).splitlines(True) if not line.startswith("#"))


def world(ns: str) -> Tuple[str, str, str]:
    return save(ns), save(ns, "ip6tables-save"), sh(ns, "ipset save")


def foreign(text: str) -> List[str]:
    """The lines of a save that are not ours (built-in chain headers excluded: their counters move)."""
    return [line for line in text.splitlines() if "NETPOL-" not in line and not line.startswith(":")]


def without_ours(text: str) -> str:
    return "".join(line for line in text.splitlines(True) if "NETPOL-" not in line)


def traffic(ns: str) -> None:
    """A few packets through INPUT/OUTPUT so that rule counters move."""
    sh(ns, "%s -c \"import socket; [socket.socket().connect_ex(('127.0.0.1', p)) for p in (80, 81)]\"" % PYTHON)


def play(ns: str, tmp_path: Path, args: Dict[str, Any], *flags: str, trace: bool = False) -> Dict[str, Any]:
    """Run the module once in the namespace; return its registered result."""
    return play_output(ns, tmp_path, args, *flags, trace=trace)[0]


def play_output(ns: str, tmp_path: Path, args: Dict[str, Any], *flags: str, trace: bool = False) -> Tuple[Dict[str, Any], str]:
    """Run the module once in the namespace; return its registered result and ansible's output."""
    result = tmp_path / ("result-%s.json" % uuid.uuid4().hex[:6])
    tasks = [
        {"netpol.fleet.netpol_chain": args, "register": "r", "ignore_errors": True},
        {
            "ansible.builtin.copy": {"content": "{{ r | to_json }}", "dest": str(result)},
            "check_mode": False,
            "diff": False,
        },
    ]
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1")
    if trace:
        env["PATH"] = "%s:%s" % (tracer(tmp_path), env["PATH"])
    argv = ["ip", "netns", "exec", ns, ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local"]
    argv += ["-e", "ansible_python_interpreter=%s" % PYTHON, str(playbook)] + list(flags)
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(result.read_text()), done.stdout


def tracer(tmp_path: Path) -> Path:
    """A PATH directory whose iptables-restore/ip6tables-restore log each call, then run the real tool."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("iptables-restore", "ip6tables-restore"):
        shim = bin_dir / tool
        shim.write_text('#!/bin/sh\necho "%s $*" >> %s\nexec /usr/sbin/%s "$@"\n' % (tool, tmp_path / "calls", tool))
        shim.chmod(0o755)
    return bin_dir


def calls(tmp_path: Path) -> List[str]:
    path = tmp_path / "calls"
    return path.read_text().splitlines() if path.exists() else []


def test_create_noop_change_remove_leave_foreign_state_and_counters_alone(ns, tmp_path):
    sh(ns, "; ".join(FOREIGN))
    traffic(ns)
    initial = world(ns)

    created = play(ns, tmp_path, ARGS)
    assert created["changed"] and created["chains"]["created"] == ["NETPOL-A", "NETPOL-B"]
    rules = sh(ns, "iptables-save -t filter")
    assert "-A INPUT -j NETPOL-B\n-A INPUT -i lo -j FOO\n" in rules
    assert '-A NETPOL-B -m comment --comment "ns/pol ingress" -j RETURN\n' in rules
    assert foreign(save(ns)) == foreign(initial[0]) and world(ns)[1:] == initial[1:]

    traffic(ns)
    counted = world(ns)
    assert re.search(r"^\[[1-9]\d*:\d+\] -A INPUT -j NETPOL-B$", counted[0], re.M)  # packets went through us
    again = play(ns, tmp_path, ARGS, trace=True)
    assert not again["changed"] and calls(tmp_path) == []
    assert world(ns) == counted  # no write: every counter is where it was

    changed_b = dict(CHAIN_B, rules=["-s 10.0.0.2/32 -j NETPOL-A"])
    changed = play(ns, tmp_path, {"chains": [CHAIN_A, changed_b], "jumps": ARGS["jumps"]}, trace=True)
    assert changed["changed"] and changed["chains"] == {"created": [], "updated": ["NETPOL-B"], "removed": []}
    assert len(calls(tmp_path)) == 2  # --test, then the one real transaction
    after = save(ns)
    assert "-A NETPOL-B -s 10.0.0.2/32 -j NETPOL-A" in after
    kept = [line for line in counted[0].splitlines() if line.startswith("[") and "NETPOL-B" not in line]
    assert kept and all(line in after.splitlines() for line in kept)  # NETPOL-A and foreign counters kept

    removed = play(ns, tmp_path, {"state": "absent"})
    assert removed["chains"]["removed"] == ["NETPOL-A", "NETPOL-B"]
    assert world(ns) == (without_ours(counted[0]),) + counted[1:]  # as before we came, counters included
    assert not play(ns, tmp_path, {"state": "absent"})["changed"]


def test_check_mode_changes_nothing_and_diff_shows_before_and_after(ns, tmp_path):
    play(ns, tmp_path, {"chains": [dict(CHAIN_A, rules=["-j RETURN"]), {"name": "NETPOL-OLD"}]})
    before = world(ns)
    result, output = play_output(ns, tmp_path, ARGS, "--check", "--diff")
    assert result["changed"] and world(ns) == before
    assert result["chains"] == {"created": ["NETPOL-B"], "updated": ["NETPOL-A"], "removed": ["NETPOL-OLD"]}
    assert result["commands"]["ipv4"].startswith("*filter\n:NETPOL-B - [0:0]\n:NETPOL-A - [0:0]\n:NETPOL-OLD - [0:0]\n")
    assert "--- before: ipv4 filter (owned chains)" in output
    for line in ("-:NETPOL-OLD", "--A NETPOL-A -j RETURN", "+-A NETPOL-A -p tcp -j DROP", "+-I INPUT 1 -j NETPOL-B"):
        assert line in output.splitlines()


def test_ipv6_and_ipv4_together(ns, tmp_path):
    sh(ns, "; ".join(FOREIGN))
    initial = world(ns)
    six = {"name": "NETPOL-ND", "rules": ["-p ipv6-icmp -m icmp6 --icmpv6-type 135 -j RETURN"]}
    created = play(ns, tmp_path, {"family": "ipv6", "chains": [six], "jumps": [{"chain": "INPUT", "target": "NETPOL-ND"}]})
    assert created["changed"]
    assert "-A NETPOL-ND -p ipv6-icmp -m icmp6 --icmpv6-type 135 -j RETURN" in save(ns, "ip6tables-save")
    assert "-A INPUT -j NETPOL-ND\n-A INPUT -j FOO6" in sh(ns, "ip6tables-save")
    assert save(ns) == initial[0]

    both = play(ns, tmp_path, BOTH)
    assert not both.get("failed"), both.get("msg")
    assert both["chains"] == {"created": ["NETPOL-A", "NETPOL-B"], "updated": [], "removed": ["NETPOL-ND"]}
    assert "-A INPUT -j NETPOL-B\n-A INPUT -j FOO6" in sh(ns, "ip6tables-save")
    assert "-A INPUT -j NETPOL-B\n-A INPUT -i lo -j FOO" in sh(ns, "iptables-save")
    assert not play(ns, tmp_path, BOTH)["changed"]
    play(ns, tmp_path, {"family": "both", "state": "absent"})
    assert world(ns) == initial


def test_an_invalid_rule_in_the_middle_fails_with_its_line_and_changes_nothing(ns, tmp_path):
    sh(ns, "; ".join(FOREIGN))
    play(ns, tmp_path, ARGS)
    traffic(ns)
    before = world(ns)
    bad = dict(CHAIN_B, rules=["-s 10.0.0.3/32 -j RETURN", "-p tcp -m tcp --dport 99999 -j RETURN", "-j RETURN"])
    result = play(ns, tmp_path, {"chains": [CHAIN_A, bad, {"name": "NETPOL-NEW"}], "jumps": ARGS["jumps"]})
    assert result["failed"]
    assert "offending line: -A NETPOL-B -p tcp -m tcp --dport 99999 -j RETURN" in result["msg"]
    assert world(ns) == before


def test_a_rule_only_ip6tables_refuses_fails_before_ipv4_is_written(ns, tmp_path):
    sh(ns, "; ".join(FOREIGN))
    play(ns, tmp_path, BOTH)
    before = world(ns)
    v4_only = dict(CHAIN_B, rules=["-p icmp -m icmp --icmp-type 8 -j RETURN"])  # no icmp match for IPv6
    result = play(ns, tmp_path, {"family": "both", "chains": [CHAIN_A, v4_only], "jumps": ARGS["jumps"]}, trace=True)
    assert result["failed"] and "offending line: -A NETPOL-B -p icmp -m icmp --icmp-type 8 -j RETURN" in result["msg"]
    restores = [c for c in calls(tmp_path) if "restore" in c]
    assert all("--test" in c for c in restores), restores  # IPv4 was tested, never written
    assert world(ns) == before


def test_a_target_that_does_not_exist_fails_the_transaction_and_changes_nothing(ns, tmp_path):
    # --test does not catch this one (it only parses); the real transaction fails as a whole.
    play(ns, tmp_path, ARGS)
    before = world(ns)
    bad = dict(CHAIN_B, rules=["-s 10.0.0.3/32 -j RETURN", "-j NO-SUCH-CHAIN"])
    result = play(ns, tmp_path, {"chains": [CHAIN_A, bad, {"name": "NETPOL-NEW"}], "jumps": ARGS["jumps"]})
    assert "Chain 'NO-SUCH-CHAIN' does not exist" in result["msg"]
    assert "offending line: -A NETPOL-B -j NO-SUCH-CHAIN" in result["msg"]
    assert world(ns) == before


def test_a_rule_the_kernel_prints_differently_is_rolled_back_and_explained(ns, tmp_path):
    play(ns, tmp_path, ARGS)
    before = world(ns)
    loose = dict(CHAIN_A, rules=["-p tcp --dport 80 -j RETURN"])
    result = play(ns, tmp_path, {"chains": [loose, CHAIN_B], "jumps": ARGS["jumps"]})
    assert result["failed"]
    assert "desired '-p tcp --dport 80 -j RETURN', kernel prints '-p tcp -m tcp --dport 80 -j RETURN'" in result["msg"]
    assert foreign(save(ns)) == foreign(before[0])
    assert [line for line in save(ns).splitlines() if "NETPOL" in line and line[0] != "["] == [
        line for line in before[0].splitlines() if "NETPOL" in line and line[0] != "["
    ]
    assert not play(ns, tmp_path, ARGS)["changed"]


def test_iptables_restore_killed_mid_transaction_leaves_the_previous_state(ns, tmp_path):
    """SIGKILL after the tool has read (and parsed) most of a large batch, before its COMMIT."""
    sh(ns, "; ".join(FOREIGN))
    play(ns, tmp_path, ARGS)
    before = world(ns)
    batch = "*filter\n:NETPOL-A - [0:0]\n:NETPOL-B - [0:0]\n-D INPUT -j NETPOL-B\n"
    batch += "".join("-A NETPOL-A -s 10.%d.%d.0/24 -j DROP\n" % (i // 256, i % 256) for i in range(20000))
    tool = subprocess.Popen(
        ["ip", "netns", "exec", ns, "iptables-restore", "--noflush", "--wait"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        tool.stdin.write(batch.encode())
        tool.stdin.flush()
        while unread(tool.stdin.fileno()):  # wait until the tool has consumed the whole batch
            os.sched_yield()
        tool.send_signal(signal.SIGKILL)
    finally:
        tool.wait()
    assert tool.returncode == -signal.SIGKILL
    assert world(ns) == before
    assert not play(ns, tmp_path, ARGS)["changed"]


def unread(fd: int) -> int:
    buf = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return int.from_bytes(buf, sys.byteorder)


def test_refuses_chain_names_without_the_prefix_or_too_long(ns, tmp_path):
    result = play(ns, tmp_path, {"chains": [{"name": "NETPOL-" + "X" * 30}]})
    assert result["failed"] and "fit 28 characters" in result["msg"]
    result = play(ns, tmp_path, {"chains": [{"name": "MINE"}]})
    assert result["failed"] and "must start with 'NETPOL-'" in result["msg"]
    assert "NETPOL" not in save(ns) and "MINE" not in save(ns)


def test_a_foreign_rule_inserted_above_our_jump_is_not_fought_over(ns, tmp_path):
    # Another owner (a host firewall, kube-proxy...) inserts its rule at position 1 after our first
    # run. Moving ours back every run would make two such owners swap places on every run of each.
    play(ns, tmp_path, ARGS)
    sh(ns, "iptables -I INPUT 1 -s 10.9.0.0/16 -j ACCEPT")
    before = world(ns)
    again = play(ns, tmp_path, ARGS, trace=True)
    assert not again["changed"] and calls(tmp_path) == [] and world(ns) == before
    assert again["warnings"] == [
        "ipv4 filter INPUT: 1 foreign rule(s) above our jump '-j NETPOL-B' (position 1 wanted, it is at 2) decide "
        "first; it is left where it is rather than moved back on every run (enforce_position moves it back)"]
    assert "-A INPUT -s 10.9.0.0/16 -j ACCEPT\n-A INPUT -j NETPOL-B\n" in sh(ns, "iptables-save -t filter")


def test_enforce_position_moves_our_jump_back_above_the_foreign_rule(ns, tmp_path):
    enforced = dict(ARGS, jumps=[{"chain": "INPUT", "target": "NETPOL-B", "enforce_position": True}])
    play(ns, tmp_path, enforced)
    sh(ns, "iptables -I INPUT 1 -s 10.9.0.0/16 -j ACCEPT")
    moved = play(ns, tmp_path, enforced)
    assert moved["changed"] and moved["jumps"] == {"added": ["-I INPUT 1 -j NETPOL-B"],
                                                   "removed": ["-I INPUT 2 -j NETPOL-B"]}
    assert "-A INPUT -j NETPOL-B\n-A INPUT -s 10.9.0.0/16 -j ACCEPT\n" in sh(ns, "iptables-save -t filter")
    assert not play(ns, tmp_path, enforced)["changed"] and not moved.get("warnings")
