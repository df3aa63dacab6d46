# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""netpol.fleet.netpol_host against the real kernel tools, one network namespace per test.

Each test runs the module (through its action plugin) with ansible-playbook inside
`ip netns exec nph...` (connection local) and judges it by what iptables-save, ip6tables-save
and ipset save print.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
ANSIBLE_PLAYBOOK = str(Path(PYTHON).parent / "ansible-playbook")

FOREIGN = [
    "ipset create mine hash:ip", "ipset add mine 10.9.9.9",
    "iptables -N FOO", "iptables -A FOO -m set --match-set mine src -j ACCEPT", "iptables -A INPUT -j FOO",
    "ip6tables -A OUTPUT -m comment --comment 'their rule' -j ACCEPT",
]
SETS_A = ("create netpol4-a hash:ip family inet maxelem 65536\nadd netpol4-a 10.0.0.1\nadd netpol4-a 10.0.0.2\n"
          "create netpol6-a hash:ip family inet6 maxelem 65536\nadd netpol6-a fd00::1\n")
SETS_B = "create netpol4-b hash:net family inet maxelem 65536\nadd netpol4-b 10.1.0.0/16\n"


def tables(v4_set: str, v6_rules: List[str]) -> List[Dict[str, Any]]:
    return [
        {"family": "ipv4", "name": "filter",
         "chains": [{"name": "NETPOL-IN", "rules": ["-m set --match-set %s src -j RETURN" % v4_set, "-j DROP"]}],
         "jumps": [{"chain": "INPUT", "target": "NETPOL-IN", "match": "", "position": 1}]},
        {"family": "ipv6", "name": "filter", "chains": [{"name": "NETPOL-IN", "rules": v6_rules}],
         "jumps": [{"chain": "INPUT", "target": "NETPOL-IN", "match": "", "position": 1}]},
    ]


STATE_A = {"set_content": SETS_A, "tables": tables("netpol4-a", ["-m set --match-set netpol6-a src -j RETURN"])}
STATE_B = {"set_content": SETS_B, "tables": tables("netpol4-b", ["-j RETURN"])}


@pytest.fixture
def ns():
    if os.geteuid() != 0:
        pytest.skip("integration tests build network namespaces and need root")
    name = "nphm-%s" % uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        sh(name, "ip link set lo up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def sh(ns: str, command: str) -> str:
    done = subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", command], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def world(ns: str, counters: bool = True) -> str:
    flag = " -c" if counters else ""
    text = sh(ns, "iptables-save%s; ip6tables-save%s; ipset save" % (flag, flag))
    return "".join(line for line in text.splitlines(True) if not line.startswith("#") and " initval " not in line
                   and not line.startswith(":"))


def foreign(ns: str) -> List[str]:
    return [line for line in world(ns).splitlines() if "NETPOL-" not in line and "netpol" not in line]


def play(ns: str, tmp_path: Path, args: Dict[str, Any], *flags: str, trace: bool = False,
         shims: Optional[Path] = None) -> Dict[str, Any]:
    result = tmp_path / ("result-%s.json" % uuid.uuid4().hex[:6])
    tasks = [{"netpol.fleet.netpol_host": args, "register": "r", "ignore_errors": True},
             {"ansible.builtin.copy": {"content": "{{ r | to_json }}", "dest": str(result)},
              "check_mode": False, "diff": False}]
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1")
    if trace:
        env["PATH"] = "%s:%s" % (tracer(tmp_path), env["PATH"])
    if shims:
        env["PATH"] = "%s:%s" % (shims, env["PATH"])
    argv = ["ip", "netns", "exec", ns, ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local",
            "-e", "ansible_python_interpreter=%s" % PYTHON, str(playbook)] + list(flags)
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(result.read_text())


def tracer(tmp_path: Path) -> Path:
    """A PATH directory whose kernel tools log each call, then run the real tool."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("iptables-restore", "ip6tables-restore", "ipset", "iptables-save", "ip6tables-save",
                 "ebtables-restore", "ebtables-save"):
        shim = bin_dir / tool
        shim.write_text('#!/bin/sh\necho "%s $*" >> %s\nexec /usr/sbin/%s "$@"\n' % (tool, tmp_path / "calls", tool))
        shim.chmod(0o755)
    return bin_dir


def calls(tmp_path: Path) -> List[str]:
    path = tmp_path / "calls"
    return path.read_text().splitlines() if path.exists() else []


def test_create_noop_change_in_one_run_each_and_foreign_state_untouched(ns, tmp_path):
    sh(ns, "; ".join(FOREIGN))
    theirs = foreign(ns)

    checked = play(ns, tmp_path, STATE_A, "--check", "--diff")
    assert checked["changed"] and "netpol" not in world(ns) and "NETPOL" not in world(ns)
    assert sorted(checked["sets"]) == ["netpol4-a", "netpol6-a"]
    headers = [d["after_header"] for d in checked["diff"]]
    assert headers == ["set netpol4-a", "set netpol6-a", "ipv4 filter chain NETPOL-IN", "ipv4 filter jumps",
                       "ipv6 filter chain NETPOL-IN", "ipv6 filter jumps"]
    assert "add netpol4-a 10.0.0.2" in checked["diff"][0]["after"]

    created = play(ns, tmp_path, STATE_A)
    assert created["changed"] and set(created["tables"]) == {"ipv4 filter", "ipv6 filter"}
    assert "-A INPUT -j NETPOL-IN" in sh(ns, "iptables-save") and "-A INPUT -j NETPOL-IN" in sh(ns, "ip6tables-save")
    assert "add netpol6-a fd00::1" in sh(ns, "ipset save")
    after_a = world(ns)

    noop = play(ns, tmp_path, STATE_A, "--diff", trace=True)
    assert not noop["changed"] and noop["diff"] == [] and world(ns) == after_a
    assert [c for c in calls(tmp_path) if "restore" in c] == []  # read only: no restore of any kind ran
    assert len([c for c in calls(tmp_path) if c.startswith(("iptables-save", "ip6tables-save"))]) == 2

    changed = play(ns, tmp_path, STATE_B, "--diff")
    assert changed["changed"]
    assert changed["sets"]["netpol4-a"]["destroyed"] and changed["sets"]["netpol6-a"]["destroyed"]
    assert changed["sets"]["netpol4-b"]["created"]
    assert "netpol4-a" not in sh(ns, "ipset list -n") and "--match-set netpol4-b" in sh(ns, "iptables-save")
    assert {d["after_header"] for d in changed["diff"]} >= {"set netpol4-a", "set netpol4-b", "ipv6 filter chain NETPOL-IN"}
    assert foreign(ns) == theirs


def test_a_refused_table_leaves_everything_and_destroys_the_new_sets_again(ns, tmp_path):
    play(ns, tmp_path, STATE_A)
    before = world(ns)
    bad = dict(STATE_B, tables=tables("netpol4-b", ["-m nosuchmatch --x -j RETURN"]))
    failed = play(ns, tmp_path, bad)
    assert failed["failed"] and "refused before any visible change" in failed["msg"], failed["msg"]
    assert "ipv6 filter" in failed["msg"] and world(ns) == before  # netpol4-b was created, then destroyed


def test_a_rule_using_a_set_that_is_not_there_is_refused_naming_it(ns, tmp_path):
    failed = play(ns, tmp_path, dict(STATE_A, set_content=SETS_B))
    assert failed["failed"] and "uses set netpol4-a, which is not among the desired sets" in failed["msg"]
    assert "NETPOL" not in world(ns) and "netpol" not in world(ns)


def test_a_family_without_a_backend_stops_the_run_before_anything(ns, tmp_path):
    arp = {"tables": [{"family": "arp", "name": "filter", "chains": [], "jumps": []}]}
    failed = play(ns, tmp_path, arp, trace=True)
    assert failed["failed"] and "family 'arp' has no backend in this release" in failed["msg"]
    assert calls(tmp_path) == []


def test_save_and_restore_put_back_only_what_is_owned(ns, tmp_path):
    play(ns, tmp_path, STATE_A)
    before = world(ns, counters=False)
    saved = tmp_path / "owned.json"
    assert not play(ns, tmp_path, {"save_to": str(saved)})["changed"]
    play(ns, tmp_path, STATE_B)
    theirs = "-A OUTPUT -d 192.0.2.7/32 -j ACCEPT\n"
    sh(ns, "iptables " + theirs)  # someone else's, made after the save
    restored = play(ns, tmp_path, {"restore_from": str(saved)})
    assert restored["changed"] and restored["rolled_back"] and (tmp_path / "owned.json.rolled-back").exists()
    now = world(ns, counters=False)
    assert theirs in now
    assert sorted(now.replace(theirs, "").splitlines()) == sorted(before.splitlines())  # ipset save: hash order


# ---------------------------------------------------------------- the bridge family (ebtables) in the same transaction

FOREIGN_L2 = [
    "ebtables -t nat -N CNI", "ebtables -t nat -A CNI --among-src 2:0:a:0:0:9 -j ACCEPT",
    "ebtables -t nat -A PREROUTING -j CNI", "ebtables -A FORWARD -i cni0 -j DROP",
]


def l2_table(rules: List[str]) -> Dict[str, Any]:
    return {"family": "bridge", "name": "nat", "chains": [{"name": "NETPOL-L2", "rules": rules}],
            "jumps": [{"chain": "PREROUTING", "target": "NETPOL-L2", "match": "", "position": 1}]}


L2_A = dict(STATE_A, tables=STATE_A["tables"] + [l2_table(["-i vm1 -s ! 52:54:0:0:0:1 -j DROP"])])
L2_B = dict(STATE_B, tables=STATE_B["tables"] + [l2_table(["-i vm1 -s ! 52:54:0:0:0:2 -j DROP", "-p 802_1Q -j DROP"])])


def bridge_world(ns: str) -> str:
    return "".join(line for line in sh(ns, "ebtables-save").splitlines(True) if not line.startswith("#"))


def foreign_l2(ns: str) -> List[str]:
    return [line for line in bridge_world(ns).splitlines() if "NETPOL-" not in line]


def test_bridge_tables_are_applied_with_the_others_checked_diffed_and_idempotent(ns, tmp_path):
    sh(ns, "; ".join(FOREIGN + FOREIGN_L2))
    theirs, theirs_l2 = foreign(ns), foreign_l2(ns)

    checked = play(ns, tmp_path, L2_A, "--check", "--diff")
    assert checked["changed"] and "NETPOL" not in bridge_world(ns) and "NETPOL" not in world(ns)
    headers = [d["after_header"] for d in checked["diff"]]
    assert headers[-2:] == ["bridge nat chain NETPOL-L2", "bridge nat jumps"]  # after both IP families
    # The diff shows the rule as ebtables-save will print it (canonical form), not as written.
    assert "-A NETPOL-L2 -s ! 52:54:00:00:00:01 -i vm1 -j DROP" in checked["diff"][-2]["after"]
    assert "bridge nat" in checked["commands"]

    created = play(ns, tmp_path, L2_A)
    assert created["changed"] and set(created["tables"]) == {"ipv4 filter", "ipv6 filter", "bridge nat"}
    nat = sh(ns, "ebtables-save -t nat")
    assert "-A NETPOL-L2 -s ! 52:54:00:00:00:01 -i vm1 -j DROP" in nat
    assert nat.index("-A PREROUTING -j NETPOL-L2") < nat.index("-A PREROUTING -j CNI")
    assert foreign_l2(ns) == theirs_l2 and foreign(ns) == theirs

    noop = play(ns, tmp_path, L2_A, "--diff", trace=True)
    assert not noop["changed"] and noop["diff"] == []
    assert [c for c in calls(tmp_path) if "restore" in c] == []
    assert len([c for c in calls(tmp_path) if c.startswith("ebtables-save")]) == 1  # one read of both tables

    changed = play(ns, tmp_path, L2_B, "--diff")
    assert changed["tables"]["bridge nat"]["updated"] == ["NETPOL-L2"]
    assert "-A NETPOL-L2 -p 802_1Q -j DROP" in sh(ns, "ebtables-save -t nat")
    assert foreign_l2(ns) == theirs_l2 and foreign(ns) == theirs


def failing_ebtables_restore(ns: str, tmp_path: Path) -> Path:
    """A PATH directory whose ebtables-restore fails in the host's namespace only: the dry check in a
    scratch namespace passes, the real restore (after both IP families were switched) fails."""
    inode = sh(ns, "readlink /proc/self/ns/net").strip()
    bin_dir = tmp_path / "failing"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "ebtables-restore"
    shim.write_text('#!/bin/sh\nif [ "$(readlink /proc/self/ns/net)" = "%s" ]; then\n'
                    '  echo "injected failure" >&2; exit 1\nfi\nexec /usr/sbin/ebtables-restore "$@"\n' % inode)
    shim.chmod(0o755)
    return bin_dir


def test_a_failing_ebtables_restore_leaves_sets_iptables_ip6tables_and_ebtables_on_the_old_state(ns, tmp_path):
    sh(ns, "; ".join(FOREIGN_L2))
    play(ns, tmp_path, L2_A)
    before, before_l2 = world(ns, counters=False), bridge_world(ns)
    failed = play(ns, tmp_path, L2_B, shims=failing_ebtables_restore(ns, tmp_path))
    assert failed["failed"] and "bridge nat" in failed["msg"] and "injected failure" in failed["msg"], failed["msg"]
    assert "the host is on its previous state" in failed["msg"]
    assert world(ns, counters=False) == before and bridge_world(ns) == before_l2


def test_an_empty_state_removes_every_owned_object_and_deletes_only_the_tables_left_empty(ns, tmp_path):
    sh(ns, "ebtables -A FORWARD -i cni0 -j DROP")  # a foreign rule in bridge filter; bridge nat is ours alone
    play(ns, tmp_path, L2_A)
    checked = play(ns, tmp_path, {"tables": [], "delete_empty_tables": True}, "--check", "--diff")
    assert sorted(checked["tables_deleted"]) == ["bridge nat", "ipv4 filter", "ipv6 filter"]
    assert [d["after_header"] for d in checked["diff"]].count("(deleted)") == 3
    assert "NETPOL-L2" in bridge_world(ns)
    removed = play(ns, tmp_path, {"tables": [], "delete_empty_tables": True})
    assert removed["changed"] and sorted(removed["tables_deleted"]) == ["bridge nat", "ipv4 filter", "ipv6 filter"]
    ruleset = sh(ns, "nft list ruleset")
    assert "table bridge filter" in ruleset and "cni0" in ruleset  # the foreign one stays
    assert "table bridge nat" not in ruleset and "table ip filter" not in ruleset and "NETPOL" not in ruleset
    assert "netpol" not in sh(ns, "ipset list -n")
    again = play(ns, tmp_path, {"tables": [], "delete_empty_tables": True})
    assert not again["changed"]


def test_save_and_restore_cover_the_bridge_tables(ns, tmp_path):
    """The enforce role's rollback (save_to, then restore_from) puts the anti-spoofing chains back too."""
    sh(ns, "; ".join(FOREIGN_L2))
    play(ns, tmp_path, L2_A)
    before, before_l3 = bridge_world(ns), world(ns, counters=False)
    saved = tmp_path / "owned.json"
    play(ns, tmp_path, {"save_to": str(saved)})
    play(ns, tmp_path, L2_B)
    assert bridge_world(ns) != before
    restored = play(ns, tmp_path, {"restore_from": str(saved)})
    assert restored["rolled_back"] and "bridge nat" in restored["tables"]
    assert bridge_world(ns) == before
    assert sorted(world(ns, counters=False).splitlines()) == sorted(before_l3.splitlines())
