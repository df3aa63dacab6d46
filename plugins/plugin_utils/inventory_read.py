# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One reading of every inventory host's variables, handed from the listing stage to the compile.

Ansible computes a host's variables anew on every hostvars[host] (VariableManager.get_vars: group and
host vars merged, vars plugins, facts cleaned): for a big inventory the bulk of the compile step. The
enforce role's listing stage (netpol_compile stage=bridge_query) and its compile, two tasks apart,
read the same variables; the listing reads them once and keeps that reading for the compile, which
takes it instead of reading again. Between the two only the bridge query runs (it sets no variable
the compile reads from hostvars: its results come in as bridge_facts).

Kept in ansible-playbook's own temporary directory (private to it, removed when it exits), under a
random token the listing returns; taken once: the compile removes it as it reads it, so no later task,
play or run can ever see it. A reading for another batch or another inventory is not taken (the
compile reads the variables itself then).
"""

from __future__ import annotations

import os
import pickle  # nosec - written and read by this ansible-playbook's own processes, in its private directory
import re
import secrets
from typing import Any, Optional, Sequence

STORE = "netpol-reads"
TOKEN = re.compile(r"^[0-9a-f]{32}$")


def keep(directory: str, reading: Any, batch: Sequence[str], hosts: Sequence[str]) -> Optional[str]:
    """Keep `reading` (of the inventory `hosts`, for `batch`) under a new token, which is returned; None if
    some value in it cannot be kept (the compile then reads the variables itself)."""
    token = secrets.token_hex(16)
    os.makedirs(os.path.join(directory, STORE), mode=0o700, exist_ok=True)
    path = _path(directory, token)
    try:
        with open(path, "xb") as out:  # a token is never reused
            pickle.dump({"batch": list(batch), "hosts": list(hosts), "reading": reading}, out, pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):  # a vars plugin's value of a type pickle refuses
        _remove(path)
        return None
    return token


def take(directory: str, token: Optional[str], batch: Sequence[str], hosts: Sequence[str]) -> Optional[Any]:
    """The reading kept under `token`, removed as it is read; None if there is none, or if it was taken
    for another batch or another inventory."""
    if not token or not TOKEN.match(token):
        return None
    path = _path(directory, token)
    try:
        with open(path, "rb") as stream:
            kept = pickle.load(stream)  # nosec - see the import
    except FileNotFoundError:
        return None
    finally:
        _remove(path)
    if kept["batch"] != list(batch) or kept["hosts"] != list(hosts):
        return None
    return kept["reading"]


def _path(directory: str, token: str) -> str:
    return os.path.join(directory, STORE, token + ".pickle")


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
