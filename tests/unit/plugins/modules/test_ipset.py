# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rows of ipset calls and results (test_ipset.yaml), in the style of community.general's
test_gio_mime.yaml: every call the module makes is listed in order, with its stdin and answer."""

from __future__ import annotations

from pathlib import Path

import pytest
from module_runner import check_case, load_cases

from ansible_collections.netpol.fleet.plugins.modules import ipset

CASES = load_cases(Path(__file__).parent / "test_ipset.yaml")


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_module(case, monkeypatch):
    check_case(ipset.main, case, monkeypatch)
