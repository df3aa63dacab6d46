# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The canonical forms the ebtables backend compares against are what the real ebtables-nft prints.

Every rule of tests/unit/.../ebtables/canonical_forms.yaml goes into one chain of a fresh network
namespace in one ebtables-restore; ebtables-save must print each exactly as the table says (and so
as canonical() writes it, which the unit test checks against the same table).
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from ansible_collections.netpol.fleet.plugins.module_utils.ebtables.canonical import canonical

pytestmark = pytest.mark.integration

FORMS = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "unit/plugins/module_utils/ebtables/canonical_forms.yaml").read_text()
)


def printed(rules):
    """What ebtables-save prints for `rules` restored into one chain of a fresh namespace."""
    ns = "npec-%s" % uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        text = "*filter\n:PROBE RETURN\n" + "".join("-A PROBE %s\n" % r for r in rules) + "COMMIT\n"
        run = ["ip", "netns", "exec", ns]
        subprocess.run(run + ["ebtables-restore", "--noflush"], input=text, text=True, check=True)
        out = subprocess.run(run + ["ebtables-save", "-t", "filter"], capture_output=True, text=True, check=True).stdout
        return [line[len("-A PROBE "):] for line in out.splitlines() if line.startswith("-A PROBE ")]
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)


def test_ebtables_prints_every_written_form_as_canonical_writes_it():
    written = [f["written"] for f in FORMS["forms"]]
    assert printed(written) == [f["printed"] for f in FORMS["forms"]]
    assert printed(written) == [canonical(w) for w in written]


def test_the_misprinted_rules_are_still_misprinted():
    # If a later ebtables prints these whole, the backend's scratch check simply stops refusing them.
    assert printed([f["written"] for f in FORMS["misprinted"]]) == [f["printed"] for f in FORMS["misprinted"]]
