# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real Linux kernel for the tests this machine's kernel cannot host: user-mode-linux (UML).

Debian's `user-mode-linux` package is a Linux 6.1 kernel built as an ordinary program
(/usr/bin/linux.uml, modules under /usr/lib/uml/modules). It boots in a few seconds with the host's
root filesystem as its own (hostfs, read-only), and has what the host kernel lacks here: bridge
vlan_filtering and 8021q VLAN devices, beside br_netfilter, veth, network namespaces, ebtables-nft,
ipset and conntrack. So a test can build hypervisors, VMs and switches in the guest and run the
collection's own playbooks there, with the same tools, venv and repository as on the host.
Its limits: no nf_tables for IPv4/IPv6 (iptables and ip6tables are the legacy ones in the guest) and
no conntrack zones (CONFIG_NF_CONNTRACK_ZONES is not set), so the product's bridge dataplane, which
zones every managed bridge, cannot be applied there (docs/bridge.md "VLAN layouts").

    guest = Guest.boot_or_skip(tmp_path)          # skips, printing why, when UML is missing or broken
    result = guest.run("ip link add br0 type bridge vlan_filtering 1 && bridge -j vlan show")
    assert result.rc == 0, result.output

Each run() is one boot: the guest's init (uml/guest-init.sh) mounts proc, sysfs and tmpfs over every
directory a tool writes to (HOME is /run/home), mounts the test's own directory read-write at
/run/work (the only place on the host the guest can change) and runs the script there as root, its
output and exit status written beside it; then the guest halts. A guest that does not halt in time
is killed, its whole process group.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import pytest

KERNEL = os.environ.get("NETPOL_UML_KERNEL", "/usr/bin/linux.uml")
MODULES = Path("/usr/lib/uml/modules")
INIT = Path(__file__).parent / "uml" / "guest-init.sh"
REPO = Path(__file__).resolve().parents[2]  # shown again in the guest when under a tmpfs it mounts (a clone in /tmp)
GUEST_WORK = "/run/work"  # where the test's directory is inside the guest
MEMORY = "1G"
BOOT_TIMEOUT = 120
_TRIAL: dict = {}  # the trial boot's verdict, once per process: None (usable) or why not


@dataclass(frozen=True)
class GuestResult:
    rc: int
    output: str   # the script's stdout and stderr
    console: str  # the guest kernel's console (boot messages), for failures


class GuestError(AssertionError):
    """The guest did not run the script to its end (no exit status): timeout, panic, boot failure."""


def live_members(group: int) -> List[int]:
    """Processes of the process group that are still alive (zombies do not count)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended while we looked
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def _reap(group: int) -> None:
    """UML's helper processes get SIGKILL with the group; wait (at most 10 s) until none is left."""
    deadline = time.monotonic() + 10
    while live_members(group) and time.monotonic() < deadline:
        time.sleep(0.1)


def _reason_unusable() -> Optional[str]:
    if not shutil.which(KERNEL) and not os.access(KERNEL, os.X_OK):
        return "user-mode-linux is not installed (%s missing; apt-get install user-mode-linux)" % KERNEL
    if not MODULES.is_dir() or not any(MODULES.iterdir()):
        return "user-mode-linux has no modules under %s" % MODULES
    return None


class Guest:
    """Boots a UML guest per run() on the test's own directory."""

    def __init__(self, work: Path):
        self.work = work.resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.runs = 0
        self.last_pid = 0

    @classmethod
    def boot_or_skip(cls, work: Path) -> "Guest":
        """A guest for the test's directory, or pytest.skip with the reason (printed too) when UML is
        missing or its trial boot (once per process) fails."""
        guest = cls(work)
        if "reason" not in _TRIAL:
            _TRIAL["reason"] = _reason_unusable() or guest._trial_boot()
        if _TRIAL["reason"]:
            print("SKIPPED: %s" % _TRIAL["reason"])
            pytest.skip(_TRIAL["reason"])
        return guest

    def _trial_boot(self) -> Optional[str]:
        try:
            trial = self.run("test -d /proc/sys/net/bridge && ip link add trialbr type bridge vlan_filtering 1 "
                             "&& ip link add trialup type veth peer name trialpeer "
                             "&& ip link add link trialup name trialup.10 type vlan id 10 && echo usable",
                             timeout=BOOT_TIMEOUT)
        except GuestError as e:
            return "the user-mode-linux guest does not boot: %s" % str(e).splitlines()[0]
        if trial.rc != 0 or "usable" not in trial.output:
            return "the user-mode-linux guest has no br_netfilter, VLAN-aware bridge or 8021q device: rc %d, %s" % (
                trial.rc, trial.output.strip())
        return None

    def path(self, name: str) -> str:
        """The guest's path of a file in the test's directory."""
        return "%s/%s" % (GUEST_WORK, name)

    def run(self, script: str, timeout: float = 300) -> GuestResult:
        """Boot, run the shell script as root in /run/work, halt; the script's exit status and output."""
        self.runs += 1
        for name in ("output", "rc"):
            (self.work / name).unlink(missing_ok=True)
        (self.work / "script.sh").write_text("set -u\n" + script)
        argv = [KERNEL, "mem=%s" % MEMORY, "root=/dev/root", "rootfstype=hostfs", "rootflags=/", "ro",
                "init=%s" % INIT, "NETPOL_UML_WORK=%s" % self.work, "NETPOL_UML_REPO=%s" % REPO, "con=null", "con0=fd:0,fd:1"]
        # UML runs as several host processes (its threads, helpers): a session of their own, killed together.
        console_path = self.work / ("console-%d.log" % self.runs)
        with open(console_path, "w") as console:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                                       start_new_session=True, cwd=self.work)
            self.last_pid = process.pid
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                _reap(process.pid)
                raise GuestError("the guest did not halt within %.0f s\n--- output so far\n%s\n--- console\n%s" % (
                    timeout, self._read("output"), console_path.read_text(errors="replace")[-3000:]))
        console_text = console_path.read_text(errors="replace")
        rc = self._read("rc").strip()
        if not rc:
            raise GuestError("the guest ended without the script's exit status (exit %s)\n--- output\n%s\n"
                             "--- console\n%s" % (process.returncode, self._read("output"), console_text[-3000:]))
        return GuestResult(int(rc), self._read("output"), console_text)

    def _read(self, name: str) -> str:
        path = self.work / name
        return path.read_text(errors="replace") if path.exists() else ""
