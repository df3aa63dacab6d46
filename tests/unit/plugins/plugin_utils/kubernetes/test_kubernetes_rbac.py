# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shipped ClusterRole grants exactly what the snapshot reads: no more, no less."""

from __future__ import annotations

from pathlib import Path

import yaml

from ansible_collections.netpol.fleet.plugins.plugin_utils.kubernetes.snapshot import RESOURCES

CLUSTERROLE = Path(__file__).resolve().parents[5] / "docs" / "rbac" / "netpol-fleet-reader.yml"


def test_the_clusterrole_grants_get_and_list_on_exactly_the_resources_read():
    role = yaml.safe_load(CLUSTERROLE.read_text())
    assert (role["kind"], role["metadata"]["name"]) == ("ClusterRole", "netpol-fleet-reader")
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    read = {(r.group, r.plural, verb) for r in RESOURCES for verb in ("get", "list")}
    assert granted == read
