# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tools.run: every way a tool can fail is a ToolError, never a fail_json that exits the process."""

from __future__ import annotations

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.netpol.fleet.plugins.module_utils.tools import ToolError, run


@pytest.fixture
def module(monkeypatch):
    """A real AnsibleModule, whose fail_json would exit: it must not be reached."""
    def fail_json(self, **result):
        raise AssertionError("fail_json(%s)" % result)

    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    with patch_module_args({}):
        yield basic.AnsibleModule(argument_spec={})


def test_a_tool_that_exits_before_reading_its_input_is_a_tool_error(module):
    """A restore that stops at its first line while more input than a pipe holds is still coming
    (or a tool killed before it reads): writing its stdin breaks the pipe."""
    with pytest.raises(ToolError) as failure:
        run(module, ["/bin/sh", "-c", "exec 0<&-; exit 1"], data="add s 10.0.0.1\n" * 100000)
    assert failure.value.rc == -1 and "could not be run or fed its input: [Errno 32] Broken pipe" in str(failure.value)


def test_a_tool_that_cannot_be_started_is_a_tool_error(module):
    with pytest.raises(ToolError, match="could not be run or fed its input"):
        run(module, ["/nonexistent/iptables-restore"], data="*filter\nCOMMIT\n")


def test_a_tool_killed_is_a_tool_error_with_its_signal(module):
    with pytest.raises(ToolError, match=r"rc=-9"):
        run(module, ["/bin/sh", "-c", "kill -9 $$"])
