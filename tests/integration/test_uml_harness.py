# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The user-mode-linux harness (uml.py) itself: what a guest script sees, what it may change on the
host, and that a guest which does not end is killed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from uml import Guest, GuestError, live_members

pytestmark = pytest.mark.integration


def test_a_script_gets_its_own_kernel_and_writes_only_into_the_test_directory(tmp_path):
    guest = Guest.boot_or_skip(tmp_path / "guest")
    marker = Path(__file__).parent / "uml" / ("written-by-the-guest-%d" % os.getpid())  # on the read-only root
    result = guest.run("uname -r; cat /sys/class/net/trialbr/bridge/vlan_filtering 2>/dev/null || echo no-trialbr\n"
                       "touch %s 2>&1 | sed 's/.*: //'\n"
                       "echo from the guest > /run/work/note; exit 3\n" % marker)
    assert result.rc == 3
    kernel, leftover, refused = result.output.splitlines()
    assert kernel != os.uname().release and leftover == "no-trialbr"  # a fresh kernel per run
    assert refused == "Read-only file system" and not marker.exists()
    assert (tmp_path / "guest" / "note").read_text() == "from the guest\n"


def test_a_guest_that_does_not_end_is_killed(tmp_path):
    guest = Guest.boot_or_skip(tmp_path / "guest")
    with pytest.raises(GuestError, match="did not halt within 30 s") as failure:
        guest.run("echo started; sleep 600", timeout=30)
    assert "started" in str(failure.value)
    assert live_members(guest.last_pid) == []  # every process of the guest is gone


def test_the_guest_runs_the_hosts_nft_tools_with_conntrack_zones_and_without_modules(tmp_path):
    """What Debian's linux.uml lacks and the bridge dataplane needs: nf_tables for IPv4 and IPv6 (the
    host's iptables-nft run unchanged) and CT --zone; everything built in (tests/uml/config.fragment)."""
    guest = Guest.boot_or_skip(tmp_path / "guest")
    result = guest.run("iptables -V; test -e /proc/modules || echo no-modules\n"
                       "iptables -t raw -A PREROUTING -j CT --zone 5 && ip6tables -t raw -A PREROUTING -j CT --zone 6 "
                       "&& iptables -t raw -S PREROUTING 1 && ip6tables -t raw -S PREROUTING 1\n")
    assert result.rc == 0, result.output
    version, *rest = result.output.splitlines()
    assert version.endswith(" (nf_tables)")
    assert rest == ["no-modules", "-A PREROUTING -j CT --zone 5", "-A PREROUTING -j CT --zone 6"]
