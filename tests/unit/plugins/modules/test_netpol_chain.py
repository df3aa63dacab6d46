# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rows of tool calls and results (test_netpol_chain.yaml), in the style of community.general's
test_gio_mime.yaml: every kernel tool call the module makes is listed, in order, with its stdin."""

from __future__ import annotations

from pathlib import Path

import pytest
from module_runner import check_case, load_cases

from ansible_collections.netpol.fleet.plugins.modules import netpol_chain

CASES = load_cases(Path(__file__).parent / "test_netpol_chain.yaml")


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_module(case, monkeypatch):
    check_case(netpol_chain.main, case, monkeypatch)
