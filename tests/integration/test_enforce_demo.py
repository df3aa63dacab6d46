# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The README's demo on the embedded lab: enforce its policy set, real traffic matches the simulator."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from browser import dump_dom, elements, screenshot
from conftest import REPO, run_playbook
from test_enforce_e2e import session_token

ARTIFACTS = REPO / "tests" / "output"


def test_demo_enforces_the_lab_policies_and_traffic_matches_the_simulator(make_lab, tmp_path: Path):
    p = "npe%sd-" % session_token()
    lab = make_lab(p)
    report = tmp_path / "reachability.html"
    demo = run_playbook("playbooks/demo.yml", lab.inventory, "-e", "netpol_verify_report_file=%s" % report).stdout
    flows = re.search(r"(\d+) flows, measured exactly as expected", demo)
    assert flows and int(flows.group(1)) > 100
    assert "Reachability report: %s" % report in demo[demo.index("Expected and measured reachability"):]
    check_report_in_a_browser(report, int(flows.group(1)))
    # the policy set is realistic: some flows are denied, some allowed, both families
    assert re.search(p + r"web1 +" + p + r"pay +10\.42\.0\.21 +tcp/8443 +deny +deny", demo)  # ipBlock except
    assert re.search(p + r"api +" + p + r"pay +fd42::21 +tcp/8443 +allow +allow", demo)
    assert re.search(p + r"api +" + p + r"db +10\.42\.0\.22 +tcp/5432 +allow +allow", demo)  # app tier, named port
    assert re.search(p + r"web1 +" + p + r"db +fd42::22 +tcp/5432 +deny +deny", demo)
    run_playbook("playbooks/remove.yml", lab.inventory)


def check_report_in_a_browser(report: Path, flows: int) -> None:
    """The lab's report as Chromium renders it: a cell per flow, all agreeing, coloured by verdict."""
    dom = dump_dom(report)
    cells = elements(dom, "td")
    cells = [c for c in cells if "cell" in c.get("class", "").split()]
    assert len(cells) == flows
    states = Counter(c["data-state"] for c in cells)
    assert set(states) == {"agree-allowed", "agree-denied"} and min(states.values()) > 10, states
    colours = {state: {c["data-colour"] for c in cells if c["data-state"] == state} for state in states}
    assert colours == {"agree-allowed": {"rgb(143, 209, 143)"}, "agree-denied": {"rgb(154, 165, 177)"}}
    assert {c["#text"] for c in cells if c["data-state"] == "agree-denied"} == {"\u2717"}
    denied = next(c["data-explain"] for c in cells if c["data-state"] == "agree-denied")
    assert "expected: denied" in denied and "isolated for" in denied and "measured: blocked" in denied
    summary = elements(dom, "p")[0]["#text"]
    assert summary.startswith("%d flows: measured exactly as expected" % flows)
    # one matrix per namespace pair with flows: 4 x 4, less monitoring -> monitoring (a single host)
    assert len(elements(dom, "table")) == 15
    screenshot(report, ARTIFACTS / "reachability-report.png")
