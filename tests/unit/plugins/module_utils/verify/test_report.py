# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The reachability report: cells per namespace pair, states from expected against measured,
and the verify role's template rendering them (plain Jinja2, as the template module does)."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2

from ansible_collections.netpol.fleet.plugins.module_utils.verify.report import report_model

TEMPLATE = Path(__file__).resolve().parents[5] / "roles" / "verify" / "templates" / "reachability.html.j2"
NAMESPACES = {"web": "shop", "api": "shop", "db": "billing"}


def flow(src, dst, address, port, reachable, **extra):
    return dict(src=src, dst=dst, address=address, family=6 if ":" in address else 4, protocol="tcp",
                port=port, reachable=reachable, **extra)


MEASURED = [
    flow("web", "db", "10.0.0.3", 5432, False, detail="timeout"),
    flow("web", "db", "fd00::3", 5432, True, detail="connected"),  # the simulator says denied: disagree
    flow("api", "db", "10.0.0.3", 5432, True, detail="connected"),
    flow("web", "api", "10.0.0.2", 80, True, detail="connected"),
]
EXPECTED = [
    flow("web", "db", "10.0.0.3", 5432, False, why=["egress  at web (shop/web): allowed, not isolated for egress",
                                                    "ingress at db (billing/db): DENIED, isolated ..."]),
    flow("web", "db", "fd00::3", 5432, False),
    flow("api", "db", "10.0.0.3", 5432, True),
    flow("web", "api", "10.0.0.2", 80, True),
    flow("api", "web", "10.0.0.1", 80, True),  # nobody probed it
]


def test_cells_per_namespace_pair_coloured_by_expected_against_measured():
    model = report_model(MEASURED, EXPECTED, NAMESPACES)
    assert [(s["src_namespace"], s["dst_namespace"]) for s in model["sections"]] == [("shop", "billing"), ("shop", "shop")]
    billing = model["sections"][0]
    assert [c["port"] + " IPv%d" % c["family"] for c in billing["columns"]] == ["tcp/5432 IPv4", "tcp/5432 IPv6"]
    assert [(r["src"], [c and c["state"] for c in r["cells"]]) for r in billing["rows"]] == [
        ("api", ["agree-allowed", None]), ("web", ["agree-denied", "disagree"])]
    assert model["counts"] == {"agree-allowed": 2, "agree-denied": 1, "disagree": 1, "measured-allowed": 0,
                               "measured-denied": 0, "unmeasured": 1}
    assert model["summary"] == "5 flows: 1 DISAGREE; 2 agree allowed, 1 agree denied, 1 disagree, 1 not measured"


def test_a_cell_explains_the_flow_expected_and_measured():
    cell = report_model(MEASURED, EXPECTED, NAMESPACES)["sections"][0]["rows"][1]["cells"][0]
    assert cell["text"].splitlines() == [
        "web -> db 10.0.0.3 tcp/5432 (IPv4)", "expected: denied",
        "  egress  at web (shop/web): allowed, not isolated for egress", "  ingress at db (billing/db): DENIED, isolated ...",
        "measured: blocked (timeout)"]


def test_without_an_expectation_cells_show_what_was_measured():
    model = report_model(MEASURED, None, NAMESPACES)
    assert model["summary"] == "4 flows measured: 3 reachable, 1 blocked (no expectation given)"
    assert {c["state"] for s in model["sections"] for r in s["rows"] for c in r["cells"] if c} == {
        "measured-allowed", "measured-denied"}


def test_the_template_renders_every_cell_escaped_and_self_contained():
    measured = MEASURED + [flow("web", "db", "10.0.0.3", 9, False, detail="<b>&")]
    html = jinja2.Template(TEMPLATE.read_text()).render(netpol_verify_report=report_model(measured, EXPECTED, NAMESPACES))
    cells = re.findall(r'<td class="cell ([a-z-]+)"', html)
    assert sorted(cells) == sorted(["agree-denied", "disagree", "agree-allowed", "agree-allowed",
                                    "measured-denied", "unmeasured"])
    assert "blocked (&lt;b&gt;&amp;)" in html and "<b>&" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing to fetch: opens offline
    assert "5 flows: 1 DISAGREE" not in html and "6 flows: 1 DISAGREE" in html
