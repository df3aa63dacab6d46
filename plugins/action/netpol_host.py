# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run netpol.fleet.netpol_host, the host's sets sent to it as one file (docs: modules/netpol_host.py).

netpol_compile wrote each distinct set once per play on the controller, named by the digest of its
content, and names per host only the sets it needs (set name -> digest). Here the host's sets are
read from that store and sent as one file into the task's temporary directory (one transfer however
many sets, removed afterwards); the module reads it through `set_src`. Nothing of the members ever
passes through a host's variables or result.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Dict, List, Optional

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

CONTENT_FILE = "netpol-host-sets.ipset"
SET_SUFFIX = ".ipset"


class ActionModule(ActionBase):
    MODULE = "netpol.fleet.netpol_host"
    TRANSFERS_FILES = True  # the base class creates the task's temporary directory on the host
    _supports_check_mode = True
    _supports_async = True  # the enforce role's rollback timer runs the module with async

    def run(self, tmp: Optional[str] = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp  # unused since Ansible 2.x; the connection's shell knows the temporary directory
        args = dict(self._task.args)
        wrap_async = bool(self._task.async_val) and not self._connection.has_native_async
        try:
            texts = self.controller_sets(args)
            if texts:
                args["set_src"] = list(args.get("set_src") or []) + [self._send("".join(texts))]
            result.update(self._execute_module(module_name=self.MODULE, module_args=args,
                                               task_vars=task_vars, wrap_async=wrap_async))
        except AnsibleActionFail as e:
            result.update(failed=True, msg=str(e))
        finally:
            if not wrap_async:  # an async job's wrapper removes the directory once the module ran
                self._remove_tmp_path(self._connection._shell.tmpdir)
        return result

    @staticmethod
    def controller_sets(args: Dict[str, Any]) -> List[str]:
        return controller_sets(args)

    def _send(self, content: str) -> str:
        shell = self._connection._shell
        path = shell.join_path(shell.tmpdir, CONTENT_FILE)
        self._transfer_data(path, content)
        self._fixup_perms2((shell.tmpdir, path), execute=False)  # readable by a become user too
        return path


def controller_sets(args: Dict[str, Any]) -> List[str]:
    """The texts of every set given on the controller (popped from args): from the store by digest,
    from set_files, and set_content."""
    named = args.pop("sets", None) or {}
    store = args.pop("set_store", None)
    files = args.pop("set_files", None) or []
    content = args.pop("set_content", None)
    if named and not store:
        raise AnsibleActionFail("netpol_host: sets needs set_store (netpol_compile's set_store)")
    texts = [stored_set(store, name, digest) for name, digest in sorted(named.items())]
    texts += [read_file(path, "set_files") for path in files]
    if content:
        texts.append(content)
    return [t if t.endswith("\n") else t + "\n" for t in texts if t]


def stored_set(store: str, name: str, digest: str) -> str:
    """One set's text from the store, checked against its digest (a stale store is an error, not a guess)."""
    text = read_file(os.path.join(store, str(digest) + SET_SUFFIX), "set %s" % name)
    if content_digest(text) != digest:
        raise AnsibleActionFail("netpol_host: set %s: %s%s in %s does not hold the content it is named after; "
                                "compile again" % (name, digest, SET_SUFFIX, store))
    return text


def content_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def read_file(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as text:
            return text.read()
    except (OSError, UnicodeError) as e:
        raise AnsibleActionFail("netpol_host: %s: %s cannot be read: %s" % (what, path, e))
