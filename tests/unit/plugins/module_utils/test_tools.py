# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tools.run: a tool's whole output, and every way a tool can fail is a ToolError, never a fail_json
that exits the process; tools.read: a listing is taken for what the kernel holds only when it is whole."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.netpol.fleet.plugins.module_utils.tools import LOG_ENV, READ_ATTEMPTS, ToolError, read, run


@pytest.fixture
def module(monkeypatch):
    """A real AnsibleModule, whose fail_json would exit: it must not be reached."""
    def fail_json(self, **result):
        raise AssertionError("fail_json(%s)" % result)

    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    with patch_module_args({}):
        yield basic.AnsibleModule(argument_spec={})


def test_a_tool_that_exits_before_reading_its_input_is_a_tool_error_with_its_own_message(module):
    """A restore that stops at its first bad line while more input than a pipe holds is still coming."""
    with pytest.raises(ToolError) as failure:
        run(module, ["/bin/sh", "-c", "exec 0<&-; echo 'Error in line 1' >&2; exit 1"], data="add s 10.0.0.1\n" * 100000)
    assert failure.value.rc == 1 and "Error in line 1" in str(failure.value)


# A tool that prints its listing and exits 2 s after it starts, as a slow iptables-save does on a loaded host.
SLOW_LISTING = ["/bin/sh", "-c", "sleep 2; echo '*filter'; echo COMMIT"]


def late_poll(monkeypatch):
    """Widen the window that a loaded host opens by chance: each poll of a child comes 2 s late (so after
    run_command's first select() has timed out at 1 s, the tool has printed and exited by the poll)."""
    real_poll = subprocess.Popen.poll

    def poll(self):
        time.sleep(2)
        return real_poll(self)

    monkeypatch.setattr(subprocess.Popen, "poll", poll)


def test_a_listing_printed_just_after_a_select_timeout_is_read_whole(module, monkeypatch):
    """AnsibleModule.run_command polls after its 1 s select() timeout, sees the tool gone and drops
    what it printed meanwhile (ansible/ansible#51393); tools.run reads the pipes to their end."""
    late_poll(monkeypatch)
    assert module.run_command(SLOW_LISTING) == (0, "", "")  # the defect tools.run goes around (fixed upstream: drop it)
    assert run(module, SLOW_LISTING) == (0, "*filter\nCOMMIT\n", "")


def test_a_runner_of_the_caller_s_own_is_used_as_it_is():
    class Runner:
        def run_command(self, argv, data=None, **kwargs):
            return 0, "ran %s with %r and %s" % (" ".join(argv), data, kwargs["environ_update"]), ""

    assert run(Runner(), ["iptables-save"], data="x")[1] == "ran iptables-save with 'x' and {'LC_ALL': 'C', 'LANG': 'C'}"


def test_tools_run_under_the_c_locale(module, monkeypatch):
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    assert run(module, ["/bin/sh", "-c", "echo $LC_ALL $LANG"])[1] == "C C\n"


def test_a_tool_that_cannot_be_started_is_a_tool_error(module):
    with pytest.raises(ToolError, match="could not be run or fed its input"):
        run(module, ["/nonexistent/iptables-restore"], data="*filter\nCOMMIT\n")


def test_a_tool_killed_is_a_tool_error_with_its_signal(module):
    with pytest.raises(ToolError, match=r"rc=-9"):
        run(module, ["/bin/sh", "-c", "kill -9 $$"])


# ---------------------------------------------------------------- read(): a listing taken for what is there only when whole


class Listings:
    """A module stand-in whose tool prints the given outputs, one per call (the last one again)."""

    def __init__(self, *outputs: str, rc: int = 0):
        self.outputs, self.rc, self.calls = list(outputs), rc, 0

    def run_command(self, argv, data=None, **kwargs):
        self.calls += 1
        return self.rc, self.outputs.pop(0) if len(self.outputs) > 1 else self.outputs[0], "err"


TABLE = "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n"


def has_filter(out):
    return "" if "*filter" in out else "table filter"


def test_an_empty_listing_that_must_hold_a_table_is_read_again_and_the_whole_one_taken():
    """What AnsibleModule.run_command returns when it stops reading just before the tool prints."""
    tool = Listings("", TABLE)
    assert read(tool, ["iptables-save", "-t", "filter"], has_filter) == (0, TABLE, "err")
    assert tool.calls == 2


def test_a_listing_that_lacks_what_it_must_hold_is_read_again():
    tool = Listings("*nat\nCOMMIT\n", "*nat\nCOMMIT\n", TABLE)
    assert read(tool, ["iptables-save"], has_filter)[1] == TABLE
    assert tool.calls == 3


def test_a_listing_that_stays_empty_is_a_tool_error_naming_the_tool_and_what_it_lacked():
    tool = Listings("")
    with pytest.raises(ToolError) as failure:
        read(tool, ["ebtables-save", "-t", "nat"], has_filter)
    assert tool.calls == READ_ATTEMPTS
    assert "ebtables-save -t nat failed (rc=0): its listing lacked any output in 3 reads in a row" in str(failure.value)


def test_a_listing_that_stays_incomplete_is_a_tool_error_naming_what_it_lacked():
    tool = Listings("*nat\nCOMMIT\n")
    with pytest.raises(ToolError, match="iptables-save failed .*lacked table filter in 3 reads"):
        read(tool, ["iptables-save"], has_filter)


def test_an_empty_listing_that_may_be_empty_is_taken_when_the_second_read_agrees():
    tool = Listings("")
    assert read(tool, ["ipset", "list", "-t"], may_be_empty=True)[1] == ""
    assert tool.calls == 2


def test_an_empty_listing_that_may_be_empty_is_not_taken_when_the_second_read_has_something():
    tool = Listings("", "Name: netpol4-web\n")
    assert read(tool, ["ipset", "list", "-t"], may_be_empty=True)[1] == "Name: netpol4-web\n"


def test_a_whole_listing_is_read_once():
    tool = Listings(TABLE)
    read(tool, ["iptables-save", "-t", "filter"], has_filter)
    assert tool.calls == 1


def test_a_tool_that_fails_is_the_callers_to_judge_with_check_false_and_an_error_otherwise():
    assert read(Listings("", rc=1), ["nft", "-j", "list", "table", "ip", "filter"], check=False) == (1, "", "err")
    with pytest.raises(ToolError, match="rc=1"):
        read(Listings("", rc=1), ["nft", "-j", "list", "table", "ip", "filter"])


def test_every_call_is_logged_as_one_json_line_when_netpol_tool_log_names_a_file(module, tmp_path, monkeypatch):
    log = tmp_path / "toolrun.log"
    monkeypatch.setenv(LOG_ENV, str(log))
    run(module, ["/bin/sh", "-c", "printf listing"])
    run(module, ["/bin/sh", "-c", "cat >/dev/null; echo no >&2; exit 3"], data="input\n", check=False)
    first, second = [json.loads(line) for line in log.read_text().splitlines()]
    assert (first["argv"][2], first["rc"], first["stdout_len"], first["stdin_len"]) == ("printf listing", 0, 7, 0)
    assert (second["rc"], second["stdout_len"], second["stdin_len"], second["stderr"]) == (3, 0, 6, "no\n")
    assert first["netns"] == os.readlink("/proc/self/ns/net") and first["pid"] == os.getpid()


def test_nothing_is_logged_without_netpol_tool_log(module, tmp_path, monkeypatch):
    monkeypatch.delenv(LOG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    run(module, ["/bin/sh", "-c", "printf listing"])
    assert list(tmp_path.iterdir()) == []
