# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The molecule scenario `bridge` runs inventories/harvester's fleet (docs/bridge.md's Harvester-like
demo) under the prefix nmb-: its copy must stay that fleet, or the demo the docs show is untested."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEMO, SCENARIO = ROOT / "inventories" / "harvester", ROOT / "molecule" / "bridge" / "inventory"
# What the scenario may set beyond the demo: facts are not needed where every address is declared.
SCENARIO_ONLY = {Path("group_vars/all/lab.yml"): {"netpol_gather_facts"}}


def files(root: Path):
    return sorted(path.relative_to(root) for path in root.rglob("*.yml"))


def test_the_bridge_scenario_runs_the_harvester_demo_fleet_under_its_own_prefix():
    assert files(SCENARIO) == files(DEMO)
    for relative in files(DEMO):
        demo = yaml.safe_load((DEMO / relative).read_text())
        scenario = yaml.safe_load((SCENARIO / relative).read_text().replace("nmb-", "hvl-"))
        for key in SCENARIO_ONLY.get(relative, ()):
            scenario.pop(key)
        assert scenario == demo, relative
