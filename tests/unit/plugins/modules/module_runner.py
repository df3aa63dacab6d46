# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a module's main() in-process and check it against rows of expected tool calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
import yaml
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args


class Finished(Exception):
    def __init__(self, result: Dict[str, Any]):
        super().__init__(result)
        self.result = result


def load_cases(path: Path) -> List[Dict[str, Any]]:
    return yaml.safe_load(path.read_text())["cases"]


def run_main(main: Callable[[], None], monkeypatch, args: Dict[str, Any]) -> Dict[str, Any]:
    """What the module exits or fails with, given these module arguments."""
    def finish(self, **result):
        raise Finished(result)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", finish)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", lambda self, **r: finish(self, failed=True, **r))
    with patch_module_args(args), pytest.raises(Finished) as finished:
        main()
    return finished.value.result


def run_case(main: Callable[[], None], case: Dict[str, Any], monkeypatch) -> Dict[str, Any]:
    """The result of one case; every tool call must be the next expected row, and all rows made."""
    calls: List[Dict[str, Any]] = list(case["calls"])
    warnings: List[str] = []

    def run_command(self, args, data=None, **kwargs):
        assert calls, "unexpected call %s" % args
        call = calls.pop(0)
        assert (args, data) == (call["command"], call.get("data"))
        return call.get("rc", 0), call.get("out", ""), call.get("err", "")

    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, *args, **kwargs: name)
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, text: warnings.append(text))
    flags = case.get("flags", {})
    args = dict(case["input"], _ansible_check_mode=flags.get("check", False), _ansible_diff=flags.get("diff", False))
    result = run_main(main, monkeypatch, args)
    assert calls == [], "calls not made: %s" % calls
    return dict(result, warnings=warnings)


def check_case(main: Callable[[], None], case: Dict[str, Any], monkeypatch) -> None:
    """Run a case and compare with its output: msg_contains, failed, then each other key."""
    result = run_case(main, case, monkeypatch)
    expected = dict(case["output"])
    for text in expected.pop("msg_contains", []):
        assert text in result["msg"]
    assert result.get("failed", False) == expected.pop("failed", False), result.get("msg")
    for key, value in expected.items():
        assert result[key] == value, key
