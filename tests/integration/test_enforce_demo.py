# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The README's demo on the embedded lab: enforce its policy set, real traffic matches the simulator."""

from __future__ import annotations

import re

from conftest import run_playbook


def test_demo_enforces_the_lab_policies_and_traffic_matches_the_simulator(make_lab):
    lab = make_lab("npe-d-")
    demo = run_playbook("playbooks/demo.yml", lab.inventory).stdout
    flows = re.search(r"(\d+) flows, measured exactly as expected", demo)
    assert flows and int(flows.group(1)) > 100
    # the policy set is realistic: some flows are denied, some allowed, both families
    assert re.search(r"npe-d-web1 +npe-d-pay +10\.42\.0\.21 +tcp/8443 +deny +deny", demo)   # ipBlock except
    assert re.search(r"npe-d-api +npe-d-pay +fd42::21 +tcp/8443 +allow +allow", demo)
    assert re.search(r"npe-d-api +npe-d-db +10\.42\.0\.22 +tcp/5432 +allow +allow", demo)    # app tier, named port
    assert re.search(r"npe-d-web1 +npe-d-db +fd42::22 +tcp/5432 +deny +deny", demo)
    run_playbook("playbooks/remove.yml", lab.inventory)
