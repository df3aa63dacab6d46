# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place modules run kernel tools (ipset, iptables-restore, ...).

Standard library and ansible.module_utils only, Python 3.9: imported by modules on managed hosts.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Callable, Optional, Sequence, Tuple

from ansible.module_utils.basic import AnsibleModule

# Tools print in English and in a parseable format only under the C locale.
TOOL_ENV = {"LC_ALL": "C", "LANG": "C"}
# A file to which every tool call appends one JSON line (argv, rc, output sizes, stderr, elapsed
# seconds, the caller's network namespace and pid), to tell afterwards which call saw what; unset
# (the default), nothing is written. The integration harness sets it to debug a run.
LOG_ENV = "NETPOL_TOOL_LOG"
# How often a listing is read before one that stays incomplete is an error (see read()).
READ_ATTEMPTS = 3
# AnsibleModule's own run_command, as imported (a test may replace it later with a runner of its own;
# ansible-test's import check gives a stand-in AnsibleModule without one).
_ANSIBLE_RUN_COMMAND = getattr(AnsibleModule, "run_command", None)


class ToolError(Exception):
    """A kernel tool failed; carries its argv, exit code and own message."""

    def __init__(self, argv: Sequence[str], rc: int, stderr: str, stdin: Optional[str] = None):
        self.argv, self.rc, self.stderr, self.stdin = list(argv), rc, stderr.strip(), stdin
        super().__init__("%s failed (rc=%d): %s" % (" ".join(self.argv), rc, self.stderr))


def run(module, argv: Sequence[str], data: Optional[str] = None, check: bool = True) -> Tuple[int, str, str]:
    """Run a tool under the C locale and return (rc, stdout, stderr); raise ToolError on failure.

    A tool that cannot be started, or that is killed, is a ToolError too: left to run_command, it
    would be a fail_json, which exits the process in the middle of a transaction instead of letting
    it undo the steps already taken."""
    started = time.monotonic()
    try:
        rc, out, err = _execute(module, argv, data)
    except OSError as e:
        _log(argv, -1, "", str(e), data, started)
        raise ToolError(argv, -1, "could not be run or fed its input: %s" % e, data)
    _log(argv, rc, out, err, data, started)
    if check and rc != 0:
        raise ToolError(argv, rc, err or out, data)
    return rc, out, err


def _execute(module, argv: Sequence[str], data: Optional[str]) -> Tuple[int, str, str]:
    """One run of a tool, its output read to the end.

    AnsibleModule.run_command drops what a tool prints when the tool exits just after one of its
    1-second select() timeouts (it polls, sees the process gone and stops reading, rc 0:
    ansible/ansible#51393, still so in ansible-core 2.19). On a loaded host a listing then comes back
    empty or cut short, and a plan made on it is wrong. subprocess's communicate() reads both pipes to
    their end before it waits, so AnsibleModule's own run_command is replaced by it here; any other
    runner the caller brings (a test's, one that runs tools in a namespace) is used as it is."""
    if _ANSIBLE_RUN_COMMAND is None or getattr(type(module), "run_command", None) is not _ANSIBLE_RUN_COMMAND:
        return module.run_command(list(argv), data=data, binary_data=data is not None, environ_update=TOOL_ENV,
                                  handle_exceptions=False)
    process = subprocess.Popen(  # nosec - argv is a list, no shell
        list(argv), stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=dict(os.environ, **TOOL_ENV), close_fds=True)
    out, err = process.communicate(data.encode("utf-8") if data is not None else None)
    return process.returncode, out.decode("utf-8", "surrogateescape"), err.decode("utf-8", "surrogateescape")


def read(module, argv: Sequence[str], gaps: Callable[[str], str] = lambda out: "", may_be_empty: bool = False,
         check: bool = True, data: Optional[str] = None) -> Tuple[int, str, str]:
    """A tool's listing that can be trusted: what the kernel holds, never "nothing" by accident.

    run() reads a tool's output whole (see _execute); this guards the plan against a listing cut
    short all the same (a runner of the caller's, such as AnsibleModule.run_command, that loses
    output; a tool that dies mid-listing): a listing read as empty would plan our chains anew or
    fail a read-back. So a listing is re-read (at most READ_ATTEMPTS times in all) while `gaps(out)` names something missing from it
    (a table we know exists, the end of a table), while it is empty and must not be, or, if it
    may be empty (nothing there yet), until two reads in a row agree that it is; still incomplete,
    it is a ToolError naming the tool and what the listing lacked. With check=False, a tool that
    fails is the caller's to judge: its (rc, stdout, stderr) come back at once, as from run(). `data`
    is its input, for a command that prints a listing of what it does with it (run again as is)."""
    missing = ""
    empty_before = False
    for _attempt in range(READ_ATTEMPTS):
        rc, out, err = run(module, argv, data, check)
        if rc != 0:
            return rc, out, err
        if not out.strip():
            if may_be_empty and empty_before:
                return rc, out, err
            empty_before, missing = True, "any output"
            continue
        empty_before = False
        missing = gaps(out)
        if not missing:
            return rc, out, err
    raise ToolError(argv, 0, "its listing lacked %s in %d reads in a row: the kernel's state cannot be "
                    "told from it, so nothing is planned on it" % (missing, READ_ATTEMPTS))


def _log(argv: Sequence[str], rc: int, out: str, err: str, data: Optional[str], started: float) -> None:
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    try:
        netns = os.readlink("/proc/self/ns/net")
    except OSError:
        netns = "?"
    line = json.dumps({"argv": list(argv), "rc": rc, "stdout_len": len(out or ""), "stdin_len": len(data or ""),
                       "stderr": (err or "")[:500], "elapsed": round(time.monotonic() - started, 4),
                       "netns": netns, "pid": os.getpid(), "time": round(time.time(), 4)})
    # One write of one line with O_APPEND: the lines of concurrent processes do not interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
