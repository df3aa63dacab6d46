# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each host is one unit (issue 12 item 3): site.yml leaves every host wholly on its old state or
wholly on its new one - chains of both families and sets - whatever fails or dies on the way.

Faults are injected by wrapper scripts earlier on PATH (the modules look tools up on PATH first):
a failing ip6tables-restore after a passing --test, a failing iptables-restore --test, a failing
ipset restore (the purge of the stale sets, after both families were switched), and SIGKILLs of the
module processes at random kernel writes, a bounded number of trials. Every host is fingerprinted by
what the collection owns; a host that is on neither policy's fingerprint is "between two states".

The killer kills what a user or the kernel kills: the process group of each module process (what
sshd's SIGHUP does when an SSH connection drops; over the netns connection that group is the Ansible
worker's) and ansible-playbook itself, with SIGKILL or SIGHUP; or it sends SIGINT to
ansible-playbook's process group, as Ctrl-C in its terminal does. The detached transaction of
netpol_host leads a session of its own and is not in those groups: it runs to its end.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from conftest import LAB_PLAYBOOK, REPO, VENV_BIN, ansible_env, delete_netns, run_playbook, write_lab_inventory
from test_enforce_e2e import session_token

FAST = ("-e", "netpol_report=false")
KILL_TRIALS = int(os.environ.get("NETPOL_KILL_TRIALS", "4"))  # raise it for a soak run
KILL_BUDGET_S = int(os.environ.get("NETPOL_KILL_BUDGET_S", "75"))  # no trial starts past this: bounded in CI
# (signal, whom): "groups" = every module process's group and ansible-playbook (a killed run, a
# dropped connection); "ctrl-c" = ansible-playbook's own process group, as a terminal's Ctrl-C.
KILLS = ((signal.SIGKILL, "groups"), (signal.SIGHUP, "groups"), (signal.SIGINT, "ctrl-c"))
WRITE_TOOLS = ("iptables-restore", "ip6tables-restore", "ipset")
WRITES_PER_HOST = 4  # a switch between the two policies: new sets, IPv4, IPv6, stale sets


def host(n: int, app: str) -> dict:
    return {"netpol_namespace": "f", "netpol_labels": {"app": app},
            "netpol_addresses": ["10.79.0.%d/24" % n, "fd79::%d/64" % n]}


HOSTS = {"a": host(1, "web"), "b": host(2, "cli")}


def policy(name: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": "f"}, "spec": spec}


# Two policy sets that differ in both families and in their sets (B's set replaces A's).
POLICY_A = [policy("from-web", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]})]
POLICY_B = [policy("from-cli", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "cli"}}}]}],
                                "egress": [{"to": [{"podSelector": {}}]}], "policyTypes": ["Ingress", "Egress"]})]


def ns_run(ns: str, *argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], check=True, capture_output=True, text=True).stdout


def fingerprint(ns: str) -> str:
    """Everything the collection owns on the host: its chains and jumps of every table of both
    families, and its sets with their members (minus the kernel's random hash seed)."""
    owned = [line for tool in ("iptables-save", "ip6tables-save") for line in ns_run(ns, tool).splitlines()
             if "NETPOL-" in line or line.startswith("*")]
    sets = [re.sub(r" (initval|bucketsize|hashsize) \S+", "", line) for line in ns_run(ns, "ipset", "save").splitlines()
            if line.split()[1].startswith("netpol")]
    return "\n".join(owned + sorted(sets))


class Fleet:
    def __init__(self, prefix: str, inventory: Path, directory: Path):
        self.prefix, self.inventory, self.directory = prefix, inventory, directory
        self.hosts = [prefix + name for name in HOSTS]
        self.states: Dict[str, Dict[str, str]] = {}

    def apply(self, policies: List[dict], env: Optional[Dict[str, str]] = None, check: bool = True):
        return run_playbook("playbooks/site.yml", self.inventory, *self.site_args(policies), check=check, env=env)

    def site_args(self, policies: List[dict]) -> List[str]:
        variables = self.directory / "policies.json"
        variables.write_text(json.dumps({"netpol_policies": policies}))
        return ["-e", "@%s" % variables, *FAST]

    def start(self, policies: List[dict], env: Dict[str, str]) -> subprocess.Popen:
        """site.yml in a session of its own, as a user starts it from a shell (and can kill it)."""
        argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(self.inventory), str(REPO / "playbooks/site.yml"),
                *self.site_args(policies)]
        return subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)

    def ensure(self, name: str) -> None:
        """Every host on policy set `name` (applied only when some host is not)."""
        if self.fingerprints() != self.states[name]:
            self.apply(POLICY_A if name == "A" else POLICY_B)
        assert self.fingerprints() == self.states[name]

    def fingerprints(self) -> Dict[str, str]:
        return {ns: fingerprint(ns) for ns in self.hosts}

    def between(self) -> List[str]:
        """Hosts that are on neither policy set's owned state."""
        now = self.fingerprints()
        return [ns for ns in self.hosts if now[ns] not in (self.states["A"][ns], self.states["B"][ns])]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("integration tests build network namespaces and need root")
    prefix = "npf%s-" % session_token()
    directory = tmp_path_factory.mktemp("npf")
    inventory = write_lab_inventory(directory / "inv", prefix, HOSTS, {"netpol_namespaces": {"f": {}}})
    try:
        run_playbook(LAB_PLAYBOOK, inventory)
        lab = Fleet(prefix, inventory, directory)
        for name, policies in (("A", POLICY_A), ("B", POLICY_B)):
            lab.apply(policies)
            lab.states[name] = lab.fingerprints()
        assert all(lab.states["A"][ns] != lab.states["B"][ns] for ns in lab.hosts)
        yield lab
    finally:
        run_playbook(LAB_PLAYBOOK, inventory, "-e", "state=absent", check=False)
        delete_netns(prefix)


def wrappers(directory: Path, scripts: Dict[str, str]) -> Dict[str, str]:
    """An environment whose PATH starts with a directory of tool wrappers (body after the shebang)."""
    directory.mkdir(parents=True, exist_ok=True)
    for tool, body in scripts.items():
        path = directory / tool
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
    env = ansible_env()
    env["PATH"] = "%s:%s" % (directory, env["PATH"])
    return env


def real(tool: str) -> str:
    return "/usr/sbin/%s" % tool


def test_ip6tables_restore_failing_after_its_test_leaves_every_host_on_the_old_state(fleet, tmp_path):
    fleet.ensure("A")
    env = wrappers(tmp_path / "bin", {"ip6tables-restore": (
        'for a in "$@"; do [ "$a" = --test ] && exec %s "$@"; done\n'
        'cat >/dev/null; echo "ip6tables-restore: injected failure" >&2; exit 1\n' % real("ip6tables-restore"))})
    failed = fleet.apply(POLICY_B, env=env, check=False)
    assert failed.returncode != 0 and "injected failure" in failed.stdout
    assert fleet.fingerprints() == fleet.states["A"], failed.stdout


def test_iptables_restore_test_failing_leaves_every_host_on_the_old_state(fleet, tmp_path):
    fleet.ensure("A")
    env = wrappers(tmp_path / "bin", {"iptables-restore": (
        'for a in "$@"; do [ "$a" = --test ] && { cat >/dev/null; echo "line 2: injected refusal" >&2; exit 2; }; done\n'
        'exec %s "$@"\n' % real("iptables-restore"))})
    failed = fleet.apply(POLICY_B, env=env, check=False)
    assert failed.returncode != 0 and "injected refusal" in failed.stdout
    assert fleet.fingerprints() == fleet.states["A"], failed.stdout


def test_ipset_restore_failing_in_the_purge_puts_every_host_back_on_the_old_state(fleet, tmp_path):
    """The purge comes last, after both families were switched: its failure must undo all of it,
    and the sets the run created are destroyed again."""
    fleet.ensure("A")
    failed_once = tmp_path / "failed-once"
    env = wrappers(tmp_path / "bin", {"ipset": (
        '[ "$1" = restore ] || exec %(ipset)s "$@"\n'
        'script=$(mktemp); cat > "$script"\n'
        # a script of destroys only is a purge; the first one of each host fails
        'if ! grep -qv "^destroy " "$script" && mkdir "%(mark)s-$(stat -L -c %%i /proc/self/ns/net)" 2>/dev/null; then\n'
        '  rm -f "$script"; echo "ipset v7.17: Error in line 1: injected failure" >&2; exit 1\n'
        'fi\n'
        '%(ipset)s restore < "$script"; rc=$?; rm -f "$script"; exit $rc\n' % {"ipset": real("ipset"), "mark": failed_once})})
    failed = fleet.apply(POLICY_B, env=env, check=False)
    assert failed.returncode != 0 and "injected failure" in failed.stdout
    assert fleet.fingerprints() == fleet.states["A"], failed.stdout


# ---- kills ----------------------------------------------------------------------------------------


def netns_inode(ns: str) -> int:
    return os.stat("/run/netns/%s" % ns).st_ino


def _stat(pid: int) -> List[str]:
    """/proc/PID/stat after the command name: state, ppid, pgrp, session, ..."""
    return Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()


def _netns(pid: int) -> Optional[int]:
    try:
        return os.stat("/proc/%d/ns/net" % pid).st_ino
    except OSError:
        return None


def module_groups(inodes: List[int]) -> List[int]:
    """The process groups of the Ansible module processes running in the lab's namespaces: the groups
    of processes there whose session was started outside them (by the Ansible worker, as sshd starts
    one per connection on a real host). A session started inside a namespace is a detached
    transaction's (it calls setsid), with the tools it runs: what a user or the kernel kills when a
    connection drops or a run is stopped does not reach it, so neither does this killer."""
    groups = set()
    for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
        try:
            if _netns(pid) not in inodes:
                continue
            fields = _stat(pid)
            group, session = int(fields[2]), int(fields[3])
        except (OSError, IndexError, ValueError):
            continue
        if _netns(session) not in inodes:
            groups.add(group)
    return sorted(groups)


def wait_for_modules(inodes: List[int], cap: float = 60.0) -> None:
    """Until no module process of a run is left in the lab's namespaces."""
    deadline = time.monotonic() + cap
    while module_groups(inodes):
        if time.monotonic() > deadline:
            raise AssertionError("module processes still run in the lab after %d s" % cap)
        time.sleep(0.1)


def wait_for_transactions(inodes: List[int], cap: float = 60.0) -> None:
    """A transaction that outlived its killed module holds its namespace's lock until it is done."""
    for inode in inodes:
        path = "/run/netpol-fleet/transaction-%d.lock" % inode
        if not os.path.exists(path):
            continue
        fd = os.open(path, os.O_RDWR)
        deadline = time.monotonic() + cap
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise AssertionError("a transaction still holds %s after %d s" % (path, cap))
                    time.sleep(0.1)
        finally:
            os.close(fd)


def write_counter(directory: Path, log: Path) -> Dict[str, str]:
    """Wrappers that log every kernel write (not --test, not a read) before running the real tool:
    the writer's pid, its namespace's inode, its ppid, process group and session, the command."""
    entry = 'echo "$$ $(stat -L -c %%i /proc/self/ns/net) $(cut -d" " -f4-6 /proc/$$/stat) %s $*" >> %s'
    scripts = {}
    for tool in WRITE_TOOLS:
        if tool == "ipset":
            test = '[ "$1" = restore ] && %s\n' % (entry % (tool, log))
        else:
            test = 'case " $* " in *" --test "*) ;; *) %s ;; esac\n' % (entry % (tool, log))
        scripts[tool] = test + 'exec %s "$@"\n' % real(tool)
    return wrappers(directory, scripts)


def kill_at_write(log: Path, k: int, inodes: List[int], playbook: subprocess.Popen, sig: int, whom: str,
                  killed: List[int]) -> None:
    """Once the k-th write has started: the module processes' groups and ansible-playbook get `sig`
    (or, for Ctrl-C, ansible-playbook's process group)."""
    while playbook.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= k:
            if whom == "ctrl-c":
                os.killpg(playbook.pid, sig)
                killed.append(playbook.pid)
                return
            for group in module_groups(inodes):
                try:
                    os.killpg(group, sig)
                    killed.append(group)
                except ProcessLookupError:
                    pass
            try:
                os.kill(playbook.pid, sig)
            except ProcessLookupError:
                pass
            return
        time.sleep(0.005)


def test_kills_at_random_kernel_writes_leave_no_host_between_two_states(fleet, tmp_path):
    fleet.ensure("A")
    inodes = [netns_inode(ns) for ns in fleet.hosts]
    writes = WRITES_PER_HOST * len(fleet.hosts)
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    between, trials, kills = 0, 0, 0
    started = time.monotonic()
    target = "B"
    while trials < KILL_TRIALS and time.monotonic() - started < KILL_BUDGET_S:
        log = tmp_path / ("trial-%d.log" % trials)
        k, (sig, whom) = rng.randint(1, writes), KILLS[trials % len(KILLS)]
        killed: List[int] = []
        playbook = fleet.start(POLICY_B if target == "B" else POLICY_A, write_counter(tmp_path / ("t%d" % trials), log))
        killer = threading.Thread(target=kill_at_write, args=(log, k, inodes, playbook, sig, whom, killed))
        killer.start()
        output = playbook.communicate()[0]
        killer.join()
        wait_for_modules(inodes)  # a module a Ctrl-C left running may not hold its lock yet
        wait_for_transactions(inodes)
        stuck = fleet.between()
        print("trial %d: %s to %s at write %d of %d, process groups signalled: %d, hosts between two states: %s"
              % (trials, signal.Signals(sig).name, whom, k, writes, len(killed), stuck or 0))
        if stuck:
            print("writes:\n%s\nplaybook:\n%s" % (log.read_text() if log.exists() else "", output))
        between += len(stuck)
        kills += len(killed)
        trials += 1
        if stuck:
            fleet.ensure("A")
        # each host is on A or on B (a killed run may have switched some): switch every host not on
        # the other policy set
        target = "A" if fleet.fingerprints() == fleet.states["B"] else "B"
    print("kill trials: %d, process groups signalled: %d, hosts between two states: %d" % (trials, kills, between))
    assert trials >= 2 and kills >= 1
    assert between == 0
