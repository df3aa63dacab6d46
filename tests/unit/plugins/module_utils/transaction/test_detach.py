# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""run_detached: the work runs in a session of its own, and a kill of the module's process group
(what sshd does when the connection drops, or a killed run) does not reach it. Real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.transaction import detach


def test_the_work_leads_a_session_and_a_process_group_of_its_own():
    def where() -> str:
        return json.dumps({"pid": os.getpid(), "session": os.getsid(0), "group": os.getpgrp()})

    child = json.loads(detach.run_detached(where))
    assert child["pid"] != os.getpid()
    assert child["session"] == child["group"] == child["pid"]


def test_the_work_s_error_and_a_crash_come_back_as_its_answer():
    assert detach.run_detached(lambda: None) is None
    assert detach.run_detached(lambda: "ipv6 filter: refused") == "ipv6 filter: refused"
    assert detach.run_detached(lambda: 1 / 0) == "ZeroDivisionError: division by zero"


# The module starts with the signals' default actions, as under sshd: a suite started by nohup or as
# a background job inherits SIGHUP or SIGINT ignored, and the module would outlive its own kill.
MODULE = textwrap.dedent("""
    import os, signal, sys, time
    from ansible_collections.netpol.fleet.plugins.module_utils.transaction import detach
    started, go, done = sys.argv[1:4]
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def work():
        open(started, "w").write(str(os.getpid()))
        while not os.path.exists(go):
            time.sleep(0.01)
        open(done, "w").write("done")

    detach.run_detached(work)
""")


def wait_for(path: Path, what: str) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP, signal.SIGINT, signal.SIGTERM])
def test_the_work_goes_on_when_the_module_s_process_group_is_killed(tmp_path, sig):
    started, go, done = tmp_path / "started", tmp_path / "go", tmp_path / "done"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    module = subprocess.Popen([sys.executable, "-c", MODULE, str(started), str(go), str(done)], env=env,
                              start_new_session=True)
    wait_for(started, "the work never started")
    os.killpg(module.pid, sig)  # the module's whole group, as a dropped SSH connection's SIGHUP
    assert module.wait() == -sig
    go.touch()  # only now may the work go on: it must still be there to do so
    wait_for(done, "the work died with the module's process group")
    assert done.read_text() == "done"
