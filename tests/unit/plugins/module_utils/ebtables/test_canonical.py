# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""canonical() writes rules the way ebtables-nft prints them (the forms were learned on the kernel)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ansible_collections.netpol.fleet.plugins.module_utils.ebtables.canonical import RuleSyntaxError, canonical

DATA = yaml.safe_load((Path(__file__).parent / "canonical_forms.yaml").read_text())


@pytest.mark.parametrize("form", DATA["forms"], ids=[f["written"] for f in DATA["forms"]])
def test_written_form_becomes_the_printed_one(form):
    assert canonical(form["written"]) == form["printed"]


@pytest.mark.parametrize("form", DATA["forms"], ids=[f["printed"] for f in DATA["forms"]])
def test_printed_form_is_a_fixed_point(form):
    assert canonical(form["printed"]) == form["printed"]


@pytest.mark.parametrize("form", DATA["misprinted"], ids=[f["written"] for f in DATA["misprinted"]])
def test_misprinted_rules_differ_from_what_ebtables_prints(form):
    # What ebtables-save loses cannot be canonicalised away: the scratch check has to see a mismatch.
    assert canonical(form["written"]) != form["printed"]


def test_unknown_options_pass_through_in_place():
    assert canonical("-p IPv4 --foo bar -j DROP") == "-p IPv4 --foo bar -j DROP"


@pytest.mark.parametrize("spec", ['--nflog-prefix "open -j DROP', "-p", "IPv4 -j DROP"])
def test_unreadable_rules_are_refused(spec):
    with pytest.raises(RuleSyntaxError):
        canonical(spec)
