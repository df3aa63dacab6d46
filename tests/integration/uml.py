# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real Linux kernel for the tests this machine's kernel cannot host: user-mode-linux (UML).

The kernel is Linux 6.1 built as an ordinary program from Debian's linux-source-6.1 by
tests/uml/build-kernel.sh (`make uml-kernel`, cached outside the clone; NETPOL_UML_KERNEL overrides
it), everything built in (tests/uml/config.fragment): bridge vlan_filtering and 8021q VLAN devices,
which the host kernel lacks, beside br_netfilter, veth, network namespaces, conntrack with zones,
nf_tables for every family (iptables-nft, ip6tables-nft and ebtables-nft, as on the host), ipset.
It boots in a few seconds with the host's root filesystem as its own (hostfs, read-only), so a test
can build hypervisors, VMs and switches in the guest and run the collection's own playbooks there,
with the same tools, venv and repository as on the host.

    guest = Guest.boot_or_skip(tmp_path)          # skips, printing why, when the kernel is missing or broken
    result = guest.run("ip link add br0 type bridge vlan_filtering 1 && bridge -j vlan show")
    assert result.rc == 0, result.output

Debian's own `user-mode-linux` package (/usr/bin/linux.uml: modular, no conntrack zones, nf_tables
for the bridge family only) boots too, for a test that needs a real kernel's refusal:
`Guest.boot_or_skip(tmp_path, DEBIAN_KERNEL)` runs DEBIAN_KERNEL_SETUP before every script.

Each run() is one boot: the guest's init (uml/guest-init.sh) mounts proc, sysfs and tmpfs over every
directory a tool writes to (HOME is /run/home), mounts the test's own directory read-write at
/run/work (the only place on the host the guest can change) and runs the script there as root, its
output and exit status written beside it; then the guest halts. A guest that does not halt in time
is killed, its whole process group.

NETPOL_TOOL_LOG set (to anything) where the tests run: every kernel tool call of the collection in
the guest appends a line to toolrun.log in the test's directory (plugins/module_utils/tools.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import pytest

BUILD_SCRIPT = Path(__file__).resolve().parents[1] / "uml" / "build-kernel.sh"
DEBIAN_KERNEL = "/usr/bin/linux.uml"
INIT = Path(__file__).parent / "uml" / "guest-init.sh"
REPO = Path(__file__).resolve().parents[2]  # shown again in the guest when under a tmpfs it mounts (a clone in /tmp)
GUEST_WORK = "/run/work"  # where the test's directory is inside the guest
MEMORY = "1G"
BOOT_TIMEOUT = 120
_TRIAL: dict = {}  # (kernel, Debian's setup?) -> the trial boot's verdict, once per process: None (usable) or why not
# What the tests need of the kernel, tried once per process before the first test boots it: each
# check prints what is missing when it fails.
TRIAL_CHECKS = (
    ("test -d /proc/sys/net/bridge", "br_netfilter"),
    ("ip link add trialbr type bridge vlan_filtering 1", "VLAN-aware bridges"),
    ("ip link add trialup type veth peer name trialpeer && ip link add link trialup name trialup.10 type vlan id 10",
     "8021q devices"),
    ("iptables -t raw -A PREROUTING -j CT --zone 1 && ip6tables -t raw -A PREROUTING -j CT --zone 1",
     "conntrack zones with iptables-nft"),
)
TRIAL = "".join("{ %s; } >/dev/null 2>&1 || echo 'no %s'\n" % check for check in TRIAL_CHECKS) + "echo tried\n"
# Debian's linux.uml keeps its modules under /usr/lib/uml/modules; modprobe wants them under
# lib/modules/$(uname -r) of a root it is given (-d), and the kernel calls the same modprobe when a
# tool needs a module. br_netfilter is never loaded on demand (the product looks for its sysctls);
# the rest is loaded up front too, so no tool's first call waits for a module (never the legacy
# tables, iptable_* and ebtable_*: the tools load those they need).
# iptables and ip6tables are the legacy ones there (no nf_tables for IPv4/IPv6): only PATH changes.
DEBIAN_KERNEL_SETUP = r"""
mkdir -p /run/modules/lib/modules /run/bin
ln -s "/usr/lib/uml/modules/$(uname -r)" "/run/modules/lib/modules/$(uname -r)"
printf '#!/bin/sh\nexec /sbin/modprobe -d /run/modules "$@"\n' > /run/modprobe
chmod 0755 /run/modprobe
echo /run/modprobe > /proc/sys/kernel/modprobe
/run/modprobe -a bridge br_netfilter veth 8021q nf_tables nft_compat nft_ct nft_limit \
    nft_log nft_reject nf_nat nf_conntrack nf_conntrack_netlink nfnetlink_log \
    xt_physdev xt_conntrack xt_comment xt_set xt_addrtype xt_CT xt_multiport xt_limit xt_NFLOG xt_mark xt_tcpudp \
    xt_state xt_LOG xt_REDIRECT xt_nat ipt_REJECT ip6t_REJECT \
    ebt_among ebt_arp ebt_ip ebt_ip6 ebt_vlan ebt_mark ebt_mark_m ebt_nflog ebt_limit ebt_pkttype configs \
    ip_set ip_set_hash_ip ip_set_hash_net ip_set_hash_netiface ip_set_hash_ipport ip_set_hash_mac \
    ip_set_hash_ipmac ip_set_list_set 2>/run/modprobe.err ||
    { echo "guest: modprobe failed:" >&2; cat /run/modprobe.err >&2; }
for tool in iptables ip6tables; do
    for suffix in "" -save -restore; do ln -s "/usr/sbin/$tool-legacy$suffix" "/run/bin/$tool$suffix"; done
done
export PATH=/run/bin:$PATH
"""
# Debian's kernel has no conntrack zones: its trial leaves them out.
DEBIAN_TRIAL = "".join("{ %s; } >/dev/null 2>&1 || echo 'no %s'\n" % check for check in TRIAL_CHECKS[:-1]) + "echo tried\n"


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


def built_kernel() -> str:
    """NETPOL_UML_KERNEL, or where build-kernel.sh keeps the kernel it builds ("" when it cannot say)."""
    if os.environ.get("NETPOL_UML_KERNEL"):
        return os.environ["NETPOL_UML_KERNEL"]
    where = subprocess.run([str(BUILD_SCRIPT), "--path"], capture_output=True, text=True, check=False)
    return where.stdout.strip() if where.returncode == 0 else ""


def _reason_unusable(kernel: str) -> Optional[str]:
    if kernel == DEBIAN_KERNEL and not os.access(kernel, os.X_OK):
        return "user-mode-linux is not installed (%s missing; apt-get install user-mode-linux)" % kernel
    if not kernel:
        return "no UML kernel: %s --path cannot say where it would be (make uml-kernel builds it)" % BUILD_SCRIPT
    if not os.access(kernel, os.X_OK):
        return "the UML kernel is not built (%s missing; make uml-kernel builds it)" % kernel
    return None


class Guest:
    """Boots a UML guest per run() on the test's own directory."""

    def __init__(self, work: Path, kernel: str = "", setup: str = ""):
        self.kernel = kernel or built_kernel()
        self.setup = setup  # shell run before each script
        self.work = work.resolve()
        self.work.mkdir(parents=True, exist_ok=True)
        self.runs = 0
        self.last_pid = 0

    @classmethod
    def boot_or_skip(cls, work: Path, kernel: str = "") -> "Guest":
        """A guest for the test's directory on the built kernel (or `kernel`: DEBIAN_KERNEL), or
        pytest.skip with the reason (printed too) when it is missing or its trial boot (once per
        process and kernel) fails."""
        debian = kernel == DEBIAN_KERNEL
        guest = cls(work, kernel, DEBIAN_KERNEL_SETUP if debian else "")
        key = (guest.kernel, debian)
        if key not in _TRIAL:
            _TRIAL[key] = _reason_unusable(guest.kernel) or guest._trial_boot(DEBIAN_TRIAL if debian else TRIAL)
        reason = _TRIAL[key]
        if reason:
            print("SKIPPED: %s" % reason)
            pytest.skip(reason)
        return guest

    def _trial_boot(self, trial: str) -> Optional[str]:
        try:
            result = self.run(trial, timeout=BOOT_TIMEOUT)
        except GuestError as e:
            return "the user-mode-linux guest (%s) does not boot: %s" % (self.kernel, str(e).splitlines()[0])
        lines = result.output.strip().splitlines()
        if lines != ["tried"]:
            return "the user-mode-linux guest (%s) is unusable for these tests: %s" % (
                self.kernel, "; ".join(line for line in lines if line != "tried") or "rc %d" % result.rc)
        return None

    def path(self, name: str) -> str:
        """The guest's path of a file in the test's directory."""
        return "%s/%s" % (GUEST_WORK, name)

    def run(self, script: str, timeout: float = 300) -> GuestResult:
        """Boot, run the shell script as root in /run/work, halt; the script's exit status and output."""
        self.runs += 1
        for name in ("output", "rc"):
            (self.work / name).unlink(missing_ok=True)
        log = "export NETPOL_TOOL_LOG=%s\n" % self.path("toolrun.log") if os.environ.get("NETPOL_TOOL_LOG") else ""
        (self.work / "script.sh").write_text("set -u\n" + log + self.setup + script)
        argv = [self.kernel, "mem=%s" % MEMORY, "root=/dev/root", "rootfstype=hostfs", "rootflags=/", "ro",
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
