# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run netpol.fleet.ipset, its `content` sent to the host as a file (docs: modules/ipset.py).

A host state of 100,000 members is megabytes of `ipset save` text. As a module argument it would be
embedded in the module's payload, piped to the host a few kilobytes at a time and parsed as part of
the wrapper; as a file it is one transfer (sftp, or a copy for local connections) into the task's
temporary directory, which the module reads through `src` and which is removed afterwards.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from ansible.plugins.action import ActionBase

CONTENT_FILE = "netpol-sets.ipset"


class ActionModule(ActionBase):
    TRANSFERS_FILES = True  # the base class creates the task's temporary directory on the host
    _supports_check_mode = True

    def run(self, tmp: Optional[str] = None, task_vars: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp  # unused since Ansible 2.x; the connection's shell knows the temporary directory
        args = dict(self._task.args)
        content = args.get("content")
        try:
            if isinstance(content, str) and args.get("src") is None:
                del args["content"]  # AnsibleModule counts a present key as given, even None
                args["src"] = self._send(content)
            result.update(self._execute_module(module_name="netpol.fleet.ipset", module_args=args, task_vars=task_vars))
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        if isinstance(content, str):
            _report_content(result, content)
        return result

    def _send(self, content: str) -> str:
        shell = self._connection._shell
        path = shell.join_path(shell.tmpdir, CONTENT_FILE)
        self._transfer_data(path, content)
        self._fixup_perms2((shell.tmpdir, path), execute=False)  # readable by a become user too
        return path


def _report_content(result: Dict[str, Any], content: str) -> None:
    """The invocation as the task was written: content (by its size), not the temporary src."""
    module_args = result.get("invocation", {}).get("module_args")
    if isinstance(module_args, dict):
        module_args.update(content="(%d lines)" % content.count("\n"), src=None)
