# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kernel writes that outlive the module process, under a per-namespace lock.

A module killed half way through a transaction (SIGKILL from a timeout, an OOM kill, a controller
that gives up) cannot undo anything. So the writes run in a child in a session of its own, with
stdio on /dev/null: it finishes the transaction - or undoes it - whether or not the module is still
there to read its answer. The lock (an flock on a file named after the network namespace) is held
from the first read to the last write, by the module and then by the child, so two transactions
(an apply and a rollback timer) never interleave. Standard library only, Python 3.9.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import time
from typing import Callable, Optional

LOCK_DIR = "/run/netpol-fleet"


def default_lock_file() -> str:
    """One lock per network namespace: the inode of /proc/self/ns/net names it."""
    return os.path.join(LOCK_DIR, "transaction-%d.lock" % os.stat("/proc/self/ns/net").st_ino)


class LockTimeout(Exception):
    pass


def take_lock(path: str, timeout: float) -> int:
    """An exclusive flock on path (created 0600), waited for at most timeout seconds."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() >= deadline:
                os.close(fd)
                raise LockTimeout("another netpol transaction holds %s (waited %d s)" % (path, timeout))
            time.sleep(0.1)


def run_detached(work: Callable[[], Optional[str]]) -> Optional[str]:
    """work() in a child that survives this process; its error message (None on success)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_end)
        _child(work, write_end)
    os.close(write_end)
    chunks = []
    while True:
        chunk = os.read(read_end, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    answer = json.loads(b"".join(chunks).decode("utf-8") or '{"error": "the transaction ended without an answer"}')
    return answer.get("error")


def _child(work: Callable[[], Optional[str]], write_end: int) -> None:
    try:
        os.setsid()  # out of the module's session and process group: their signals are not ours
        for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_IGN)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # the controller reads the module's stdout to its end: do not hold it
            os.dup2(null, fd)
        answer = {"error": work()}
    except BaseException as e:  # the parent must hear of anything, and the child must never return
        answer = {"error": "%s: %s" % (type(e).__name__, e)}
    try:
        os.write(write_end, json.dumps(answer).encode("utf-8"))
    except OSError:
        pass  # the module is gone; the transaction is done all the same
    os._exit(0)
