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
