# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The README's demo on the embedded lab: enforce its policy set, real traffic matches the simulator."""

from __future__ import annotations

import re

from conftest import run_playbook
from test_enforce_e2e import session_token


def test_demo_enforces_the_lab_policies_and_traffic_matches_the_simulator(make_lab):
    p = "npe%sd-" % session_token()
    lab = make_lab(p)
    demo = run_playbook("playbooks/demo.yml", lab.inventory).stdout
    flows = re.search(r"(\d+) flows, measured exactly as expected", demo)
    assert flows and int(flows.group(1)) > 100
    # the policy set is realistic: some flows are denied, some allowed, both families
    assert re.search(p + r"web1 +" + p + r"pay +10\.42\.0\.21 +tcp/8443 +deny +deny", demo)  # ipBlock except
    assert re.search(p + r"api +" + p + r"pay +fd42::21 +tcp/8443 +allow +allow", demo)
    assert re.search(p + r"api +" + p + r"db +10\.42\.0\.22 +tcp/5432 +allow +allow", demo)  # app tier, named port
    assert re.search(p + r"web1 +" + p + r"db +fd42::22 +tcp/5432 +deny +deny", demo)
    run_playbook("playbooks/remove.yml", lab.inventory)
