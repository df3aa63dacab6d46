# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rows of tool calls and results (test_netpol_chain.yaml), in the style of community.general's
test_gio_mime.yaml: every kernel tool call the module makes is listed, in order, with its stdin."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.netpol.fleet.plugins.modules import netpol_chain

CASES = yaml.safe_load((Path(__file__).parent / "test_netpol_chain.yaml").read_text())["cases"]


class Finished(Exception):
    def __init__(self, result: Dict[str, Any]):
        super().__init__(result)
        self.result = result


def run_module(case: Dict[str, Any], monkeypatch) -> Dict[str, Any]:
    calls: List[Dict[str, Any]] = list(case["calls"])

    def run_command(self, args, data=None, **kwargs):
        assert calls, "unexpected call %s" % args
        call = calls.pop(0)
        assert (args, data) == (call["command"], call.get("data"))
        return call.get("rc", 0), call.get("out", ""), call.get("err", "")

    def finish(self, **result):
        raise Finished(result)

    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, required=False: name)
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", finish)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", lambda self, **r: finish(self, failed=True, **r))
    flags = case.get("flags", {})
    args = dict(case["input"], _ansible_check_mode=flags.get("check", False), _ansible_diff=flags.get("diff", False))
    with patch_module_args(args), pytest.raises(Finished) as finished:
        netpol_chain.main()
    assert calls == [], "calls not made: %s" % calls
    return finished.value.result


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_module(case, monkeypatch):
    result = run_module(case, monkeypatch)
    expected = dict(case["output"])
    for text in expected.pop("msg_contains", []):
        assert text in result["msg"]
    assert result.get("failed", False) == expected.pop("failed", False), result.get("msg")
    for key, value in expected.items():
        assert result[key] == value, key
