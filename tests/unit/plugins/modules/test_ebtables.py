# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rows of tool calls and results (test_ebtables.yaml): every kernel tool call the ebtables module
makes, in order, with its stdin and what the tool answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from module_runner import check_case, load_cases

from ansible_collections.netpol.fleet.plugins.modules import ebtables

CASES = load_cases(Path(__file__).parent / "test_ebtables.yaml")


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_module(case, monkeypatch):
    check_case(ebtables.main, case, monkeypatch)
