# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ipset action plugin moves `content` into a file on the host and nothing else."""

from __future__ import annotations

from typing import Any, Dict
from unittest.mock import MagicMock

import pytest

from ansible_collections.netpol.fleet.plugins.action.ipset import ActionModule

CONTENT = "create netpol4-web hash:net family inet\nadd netpol4-web 10.0.0.1\n"


def action(args: Dict[str, Any], module_result: Any) -> ActionModule:
    task = MagicMock(async_val=0, check_mode=False, args=args)
    connection = MagicMock()
    connection._shell.tmpdir = "/tmp/ansible-tmp-x"
    connection._shell.join_path = lambda *parts: "/".join(parts)
    plugin = ActionModule(task, connection, MagicMock(check_mode=False), loader=None, templar=None,
                          shared_loader_obj=None)
    plugin._transfer_data = MagicMock(side_effect=lambda path, data: path)
    plugin._fixup_perms2 = MagicMock()
    plugin._remove_tmp_path = MagicMock()
    plugin._execute_module = MagicMock(side_effect=[module_result] if isinstance(module_result, Exception)
                                       else lambda **kw: dict(module_result, invocation={"module_args": dict(kw["module_args"])}))
    return plugin


def test_content_travels_as_a_file_the_module_reads_as_src():
    plugin = action({"content": CONTENT}, {"changed": True})
    result = plugin.run(task_vars={})
    plugin._transfer_data.assert_called_once_with("/tmp/ansible-tmp-x/netpol-sets.ipset", CONTENT)
    sent = plugin._execute_module.call_args.kwargs["module_args"]
    assert sent == {"src": "/tmp/ansible-tmp-x/netpol-sets.ipset"}
    assert result["changed"] and result["invocation"]["module_args"] == {"content": "(2 lines)", "src": None}
    plugin._remove_tmp_path.assert_called_once_with("/tmp/ansible-tmp-x")


def test_other_arguments_pass_through_untouched():
    args = {"sets": [{"name": "netpol4-web", "members": ["10.0.0.1"]}], "purge_prefix": ["netpol4-"]}
    plugin = action(args, {"changed": False})
    assert not plugin.run(task_vars={})["changed"]
    plugin._transfer_data.assert_not_called()
    assert plugin._execute_module.call_args.kwargs["module_args"] == args


def test_content_and_src_together_are_left_to_the_module_to_refuse():
    plugin = action({"content": CONTENT, "src": "/etc/iptables/ipsets"}, {"failed": True, "msg": "mutually exclusive"})
    assert plugin.run(task_vars={})["failed"]
    plugin._transfer_data.assert_not_called()


def test_the_temporary_directory_goes_even_when_the_module_cannot_run():
    plugin = action({"content": CONTENT}, RuntimeError("connection lost"))
    with pytest.raises(RuntimeError):
        plugin.run(task_vars={})
    plugin._remove_tmp_path.assert_called_once_with("/tmp/ansible-tmp-x")
