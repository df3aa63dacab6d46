# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""netpol.fleet.ipset against the real ipset, one network namespace (npi...) per test.

The module runs through `ansible localhost -c local` inside `ip netns exec`, and is judged by what
`ipset save` prints afterwards. An `ipset` wrapper first in PATH logs every call the module makes
(so a no-op run can be shown to write nothing) and injects faults: a line the kernel rejects in the
middle of a batch, or the module process killed while `ipset restore` is half-way through its input.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.ipset.text import normalize_entry

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
ANSIBLE = str(Path(PYTHON).parent / "ansible")
MODULE = "ansible_collections.netpol.fleet.plugins.modules.ipset"
IPSET = shutil.which("ipset") or "/usr/sbin/ipset"

# Logs argv; NPI_REJECT_LINE=N turns line N of a restore into a member the kernel rejects;
# NPI_KILL_AFTER=N feeds restore only N lines, then SIGKILLs the module process (its parent) and itself.
WRAPPER = """#!/bin/sh
echo "$*" >> "$NPI_TRACE"
if [ "$1" = restore ] && [ -n "$NPI_REJECT_LINE" ]; then
    sed "${NPI_REJECT_LINE}s/^add \\([^ ]*\\) .*/add \\1 300.0.0.1/" | %(ipset)s restore
    exit $?
fi
if [ "$1" = restore ] && [ -n "$NPI_KILL_AFTER" ]; then
    head -n "$NPI_KILL_AFTER" | %(ipset)s restore
    kill -9 $PPID $$
fi
exec %(ipset)s "$@"
"""

FOREIGN = """\
create mine hash:ip family inet hashsize 1024 maxelem 65536
add mine 10.9.9.9
create netpolitics hash:net family inet6 hashsize 1024 maxelem 65536 comment
add netpolitics fd00:99::/64 comment "not ours"
"""


class Host:
    """One network namespace and a way to run the module in it."""

    def __init__(self, name: str, bin_dir: Path):
        self.name, self.bin_dir, self.trace = name, bin_dir, bin_dir / "trace"

    def sh(self, command: str, stdin: str = "") -> str:
        done = subprocess.run(["ip", "netns", "exec", self.name, "sh", "-c", command],
                              input=stdin, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def save(self) -> str:
        return self.sh("%s save" % IPSET)

    def members(self, set_name: str) -> List[str]:
        return sorted(line.split(" ", 2)[2] for line in self.sh("%s save %s" % (IPSET, set_name)).splitlines()
                      if line.startswith("add "))

    def names(self) -> List[str]:
        return sorted(self.sh("%s list -n" % IPSET).split())

    def calls(self) -> List[str]:
        """The ipset calls the module made since the last look."""
        lines = self.trace.read_text().splitlines() if self.trace.exists() else []
        self.trace.unlink(missing_ok=True)
        return lines

    def env(self, **fault: str) -> Dict[str, str]:
        return dict(os.environ, PATH="%s:%s" % (self.bin_dir, os.environ["PATH"]), NPI_TRACE=str(self.trace),
                    PYTHONPATH=str(ROOT / "collection"), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
                    ANSIBLE_NOCOLOR="1", **fault)

    def run(self, args: Dict[str, Any], check: bool = False, diff: bool = False, fail: bool = False,
            **fault: str) -> Dict[str, Any]:
        """The module's own result, running it directly as Ansible's local connection would (fast)."""
        args_file = self.bin_dir / "args.json"
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(
            args, _ansible_check_mode=check, _ansible_diff=diff, _ansible_verbosity=0)}))
        argv = ["ip", "netns", "exec", self.name, PYTHON, "-m", MODULE, str(args_file)]
        done = subprocess.run(argv, cwd=ROOT, env=self.env(**fault), capture_output=True, text=True, check=False)
        assert (done.returncode != 0) == fail, done.stdout + done.stderr
        return json.loads(done.stdout) if done.stdout.strip() else {"killed": done.returncode}

    def ansible(self, args: Dict[str, Any], *flags: str) -> str:
        """What a user of `ansible -m netpol.fleet.ipset` sees (diff and warnings included)."""
        argv = ["ip", "netns", "exec", self.name, ANSIBLE, "localhost", "-c", "local", "-i", "localhost,",
                "-e", "ansible_python_interpreter=%s" % PYTHON, "-m", "netpol.fleet.ipset",
                "-a", json.dumps(args), *flags]
        done = subprocess.run(argv, cwd=ROOT, env=self.env(), capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    if os.geteuid() != 0 or not shutil.which("ipset"):
        pytest.skip("needs root and ipset")
    name = "npi-%s" % uuid.uuid4().hex[:8]
    wrapper = tmp_path / "ipset"
    wrapper.write_text(WRAPPER % {"ipset": IPSET})
    wrapper.chmod(0o755)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield Host(name, tmp_path)
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


WEB = {"name": "netpol4-web", "members": ["10.0.0.1/32", {"entry": "10.1.2.3/16", "nomatch": True, "comment": "no b"}]}
WEB2 = {"name": "netpol4-web", "members": ["10.0.0.2", {"entry": "10.1.0.0/16", "nomatch": True, "comment": "no b"}]}


def test_create_then_nothing_then_change_then_remove(host):
    assert "localhost | CHANGED" in host.ansible(WEB)
    assert host.members("netpol4-web") == ["10.0.0.1", '10.1.0.0/16 nomatch comment "no b"']
    assert host.calls() == ["list -t", "list -t", "restore"]  # no set yet: two reads agree (tools.read)

    before = host.save()
    assert "localhost | SUCCESS" in host.ansible(WEB)
    assert host.calls() == ["list -t", "save"]  # read only: no restore
    assert host.save() == before  # same initval: the set was not even recreated

    changed = host.run(WEB2)
    assert changed["sets"]["netpol4-web"] == {"added": ["10.0.0.2"], "removed": ["10.0.0.1"],
                                              "created": False, "destroyed": False}
    assert host.members("netpol4-web") == ["10.0.0.2", '10.1.0.0/16 nomatch comment "no b"']
    assert host.names() == ["netpol4-web"]  # the temporary is gone
    assert not host.run(WEB2)["changed"]

    removed = host.run({"name": "netpol4-web", "state": "absent"})
    assert removed["changed"] and host.names() == []
    assert not host.run({"name": "netpol4-web", "state": "absent"})["changed"]


def test_members_as_strings_with_flags_make_the_same_set_as_dicts(host):
    compact = {"name": "netpol4-web", "members": ["10.0.0.1", '10.1.0.0/16 nomatch comment "no b"']}
    result = host.run(compact)
    assert result["changed"]
    assert result["invocation"]["module_args"]["members"] == "(2 members)"  # not echoed back in full
    assert host.members("netpol4-web") == ["10.0.0.1", '10.1.0.0/16 nomatch comment "no b"']
    host.calls()
    assert not host.run(WEB)["changed"]  # the dict spelling of the same set: nothing to do
    assert host.calls() == ["list -t", "save"]


def test_content_pasted_from_ipset_save_makes_the_same_sets_and_a_rerun_writes_nothing(host, tmp_path):
    host.run({"sets": [WEB, {"name": "netpol6-db", "family": "inet6", "members": ["fd00::5", "fd00:1::/64"]}]})
    saved = host.save()  # with the kernel's bucketsize and initval
    other = Host(host.name + "-b", tmp_path)
    subprocess.run(["ip", "netns", "add", other.name], check=True)
    try:
        created = other.run({"content": saved})
        assert created["changed"] and sorted(created["sets"]) == ["netpol4-web", "netpol6-db"]
        assert created["invocation"]["module_args"]["content"] == "(6 lines)"  # not echoed back in full
        for name in ("netpol4-web", "netpol6-db"):
            assert other.members(name) == host.members(name)
        other.calls()
        assert not other.run({"content": saved})["changed"]
        assert other.calls() == ["list -t", "save"]  # read only: no restore
    finally:
        subprocess.run(["ip", "netns", "delete", other.name], check=False)


def test_content_through_ansible_travels_as_a_file_and_check_mode_shows_the_diff(host):
    host.run(WEB)
    before = host.save()
    content = "create netpol4-web hash:net family inet\nadd netpol4-web 10.0.0.2\n"
    shown = host.ansible({"content": content}, "--check", "--diff")
    assert "localhost | CHANGED" in shown
    assert "-netpol4-web: 10.0.0.1\n" in shown and "+netpol4-web: 10.0.0.2\n" in shown
    assert host.save() == before  # check mode wrote nothing
    assert "localhost | CHANGED" in host.ansible({"content": content})
    assert host.members("netpol4-web") == ["10.0.0.2"]
    assert "localhost | SUCCESS" in host.ansible({"content": content})


def test_src_reads_a_sets_file_on_the_host(host, tmp_path):
    sets_file = tmp_path / "ipsets"
    sets_file.write_text("create netpol6-db hash:ip family inet6\nadd netpol6-db fd00::5\n")
    assert host.run({"src": str(sets_file)})["changed"]
    assert host.members("netpol6-db") == ["fd00::5"]
    assert not host.run({"src": str(sets_file)})["changed"]


def test_content_with_a_bad_line_names_it_and_touches_nothing(host):
    host.run(WEB)
    before = host.save()
    host.calls()
    failed = host.run({"content": "create netpol4-web hash:net\nadd netpol4-web 10.0.0.0/8\nadd netpol4-web 10.0.0.0/33\n"},
                      fail=True)
    assert "set netpol4-web: line 3: '10.0.0.0/33' is not an IP address or CIDR" in failed["msg"]
    assert host.calls() == [] and host.save() == before


def test_check_mode_changes_nothing_and_diff_shows_each_member(host):
    host.run(WEB)
    before = host.save()
    host.calls()
    shown = host.ansible(WEB2, "--check", "--diff", "-vv")
    assert "localhost | CHANGED" in shown
    assert "\n netpol4-web: create hash:net family inet comment maxelem 65536\n" \
           "-netpol4-web: 10.0.0.1\n+netpol4-web: 10.0.0.2\n" in shown.replace("\r", "")
    assert '"swap netpol4-web-t netpol4-web"' in shown  # the script, in check mode
    assert host.calls() == ["list -t", "save"] and host.save() == before
    assert host.run({"name": "netpol4-new", "members": ["10.0.0.0/8"]}, check=True)["changed"]
    assert host.save() == before


def test_diff_is_empty_when_nothing_changes(host):
    host.run(WEB)
    assert host.run(WEB, diff=True)["diff"] == {"before": "", "after": ""}


def test_many_sets_and_ipv6_in_one_restore(host):
    sets = {"sets": [
        WEB,
        {"name": "netpol6-web", "family": "inet6", "members": ["FD00:0:0:1::5/64", "fd00:2::1/128", "::ffff:10.0.0.1"]},
        {"name": "netpol6-ports", "family": "inet6", "type": "hash:net,port", "members": ["fd00::/64,udp:53"],
         "options": [["maxelem", "1024"], ["counters", "true"]]},
        {"name": "netpol4-ipport", "type": "hash:ip,port", "members": ["10.0.0.1,80", "10.0.0.1,sctp:5"]},
        {"name": "netpol4-iface", "type": "hash:net,iface", "members": ["10.0.0.0/8,physdev:vnet0"]},
    ]}
    result = host.run(sets)
    assert result["changed"] and host.calls() == ["list -t", "list -t", "restore"]  # no set yet: read twice
    assert host.members("netpol6-web") == ["::ffff:10.0.0.1", "fd00:0:0:1::/64", "fd00:2::1"]
    assert host.members("netpol6-ports") == ["fd00::/64,udp:53 packets 0 bytes 0"]
    assert "family inet6 hashsize 1024 maxelem 1024 counters" in host.sh("%s save netpol6-ports" % IPSET)
    assert host.members("netpol4-ipport") == ["10.0.0.1,sctp:5", "10.0.0.1,tcp:80"]
    assert not host.run(sets)["changed"]
    assert host.calls()[-2:] == ["list -t", "save"]


ENTRIES = [
    ("hash:ip", "inet", ["10.0.0.1/32", "192.0.2.255"]),
    ("hash:net", "inet", ["10.2.3.4/24", "10.0.0.9/32", "10.0.0.0/31", "0.0.0.0/1"]),
    ("hash:ip", "inet6", ["FD00::1/128", "1:0:2:3:4:5:6:7", "1:0:0:2:0:0:0:3", "::ffff:1.2.3.4", "::1.2.3.4",
                          "64:ff9b::1.2.3.4", "::1", "fe80::1:0:0:0"]),
    ("hash:net", "inet6", ["fd00::1/64", "fd00:0:0:1::5", "2001:db8::/33", "8000::/1"]),
    ("hash:ip,port", "inet", ["1.2.3.4,80", "1.2.3.4,UDP:53", "1.2.3.4,sctp:5", "1.2.3.4,udplite:4", "1.2.3.4,https"]),
    ("hash:net,port", "inet6", ["fd00::5/64,tcp:443"]),
    ("hash:net,iface", "inet", ["1.2.3.4/32,eth0", "1.2.3.0/24,physdev:eth1"]),
]


@pytest.mark.parametrize("set_type,family,entries", ENTRIES)
def test_normalisation_is_exactly_what_ipset_prints(host, set_type, family, entries):
    script = "create probe %s family %s\n" % (set_type, family)
    script += "".join("add probe %s\n" % e for e in entries)
    host.sh("%s restore" % IPSET, stdin=script)
    assert host.members("probe") == sorted(normalize_entry(set_type, family, e) for e in entries)


def test_foreign_sets_stay_byte_identical(host):
    host.sh("%s restore" % IPSET, stdin=FOREIGN)
    host.sh("iptables -A INPUT -m set --match-set mine src -j ACCEPT")
    foreign_before = host.save()
    host.run({"sets": [WEB, {"name": "netpol4-db", "members": ["10.5.0.0/16"]}]})
    host.run({"sets": [WEB2], "purge_prefix": "netpol4-"})
    host.run({"sets": [], "purge_prefix": "netpol4-"})
    assert host.names() == ["mine", "netpolitics"]
    assert host.save() == foreign_before


def test_purge_keeps_sets_still_referenced_and_says_so(host):
    host.run({"sets": [WEB, {"name": "netpol4-old", "members": ["10.7.0.0/16"]},
                       {"name": "netpol4-used", "type": "hash:ip", "members": ["10.8.0.1"]}]})
    host.sh("iptables -A INPUT -m set --match-set netpol4-used src -j DROP")
    result = host.run({"sets": [WEB], "purge_prefix": "netpol4-"})
    assert result["changed"] and result["kept_referenced"] == ["netpol4-used"]
    assert result["sets"]["netpol4-old"]["destroyed"]
    assert "set netpol4-used matches purge_prefix but is still referenced" in json.dumps(result)
    assert host.names() == ["netpol4-used", "netpol4-web"]
    host.sh("iptables -F INPUT")
    assert host.run({"sets": [WEB], "purge_prefix": "netpol4-"})["changed"]
    assert host.names() == ["netpol4-web"]


def test_type_change_replaces_an_unreferenced_set_and_refuses_a_referenced_one(host):
    host.run(WEB)
    host.sh("iptables -A INPUT -m set --match-set netpol4-web src -j DROP")
    before = host.save()
    refused = host.run({"name": "netpol4-web", "type": "hash:ip", "members": ["10.0.0.1"]}, fail=True)
    assert "netpol4-web changes from hash:net inet to hash:ip inet" in refused["msg"]
    assert "referenced 1 time(s)" in refused["msg"]
    assert host.save() == before
    host.sh("iptables -F INPUT")
    replaced = host.run({"name": "netpol4-web", "type": "hash:ip", "family": "inet6", "members": ["fd00::1"]})
    assert replaced["changed"]
    assert "create netpol4-web hash:ip family inet6" in host.save()
    assert host.members("netpol4-web") == ["fd00::1"] and host.names() == ["netpol4-web"]


def test_an_invalid_member_fails_before_the_kernel_is_touched(host):
    host.run(WEB)
    before = host.save()
    host.calls()
    failed = host.run({"name": "netpol4-web", "members": ["10.0.0.1", "10.0.0.300", "10.0.0.3"]}, fail=True)
    assert "'10.0.0.300' is not an IP address" in failed["msg"]
    assert host.calls() == [] and host.save() == before


def batch() -> Dict[str, Any]:
    """A change to two existing sets and a new one: fill of all three precedes every swap."""
    return {"sets": [
        {"name": "netpol4-a", "members": ["10.0.%d.0/24" % i for i in range(50)]},
        {"name": "netpol4-b", "members": ["10.1.%d.0/24" % i for i in range(50)]},
        {"name": "netpol6-c", "family": "inet6", "members": ["fd00:%x::/64" % i for i in range(50)]},
    ]}


def previous(host: Host) -> str:
    host.run({"sets": [{"name": "netpol4-a", "members": ["10.0.0.0/24"]},
                       {"name": "netpol4-b", "members": ["10.1.0.0/24"]}]})
    host.sh("%s restore" % IPSET, stdin=FOREIGN)
    host.sh("iptables -A INPUT -m set --match-set netpol4-a src -j DROP")
    host.calls()
    return host.save()


@pytest.mark.parametrize("line, rejected", [
    (1 + 50 + 1 + 26, "add netpol4-b-t 10.1.31.0/24"),  # netpol4-b's temporary (sorted as text), after netpol4-a's
    (1 + 50 + 1 + 50 + 1 + 10, "add netpol6-c fd00:19::/64"),  # the new set, built under its own name
])
def test_a_member_rejected_mid_batch_leaves_the_previous_state(host, line, rejected):
    before = previous(host)
    failed = host.run(batch(), fail=True, NPI_REJECT_LINE=str(line))
    assert "ipset restore rejected '%s'" % rejected in failed["msg"]
    assert "Error in line %d" % line in failed["msg"]
    assert host.save() == before  # temporaries rolled back, live sets untouched
    assert host.run(batch())["changed"]
    assert len(host.members("netpol6-c")) == 50


def test_a_run_killed_mid_apply_leaves_the_previous_state_and_the_next_run_recovers(host):
    before = previous(host)
    killed = host.run(batch(), fail=True, NPI_KILL_AFTER="120")  # inside netpol6-c's fill: nothing swapped yet
    assert killed == {"killed": -9}
    left = host.save()
    assert "create netpol4-a-t" in left and "create netpol4-b-t" in left  # a killed run could not clean up
    new_set = [line for line in left.splitlines() if " netpol6-c " in line]
    assert 1 < len(new_set) < 51  # the new set, partly filled; no rule can reference it yet
    assert [line for line in left.splitlines() if "-t " not in line and line not in new_set] == before.splitlines()
    recovered = host.run(batch())
    assert recovered["sets"]["netpol4-a-t"] == {"added": [], "removed": [], "created": False, "destroyed": True}
    assert recovered["sets"]["netpol6-c"]["added"] and not recovered["sets"]["netpol6-c"]["created"]
    assert host.names() == ["mine", "netpol4-a", "netpol4-b", "netpol6-c", "netpolitics"]
    assert len(host.members("netpol4-b")) == 50
    assert not host.run(batch())["changed"]


def test_purge_by_names_to_keep_destroys_the_others_and_reads_no_members(host):
    previous(host)  # netpol4-a (referenced by a rule), netpol4-b, and foreign sets
    host.run({"sets": [{"name": "netpol4-old", "members": ["10.9.0.0/16"]}]})
    host.calls()
    assert not host.run({"purge_prefix": ["netpol4-"], "keep": ["netpol4-a", "netpol4-b", "netpol4-old"]})["changed"]
    assert host.calls() == ["list -t"]  # only kept sets match: their members are not read
    purged = host.run({"purge_prefix": ["netpol4-"], "keep": ["netpol4-a", "netpol4-b"]})
    assert list(purged["sets"]) == ["netpol4-old"] and purged["kept_referenced"] == []
    assert host.names() == ["mine", "netpol4-a", "netpol4-b", "netpolitics"]
