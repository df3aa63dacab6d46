# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How input errors read, and that they travel intact."""

from __future__ import annotations

import pickle

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.engine.errors import InputError, InputErrors, Problems


@pytest.mark.parametrize(
    "error, text",
    [
        (InputError("policies/db.yaml", "billing/db-allow", "spec.ingress[0].ports[1].endPort", "must be >= port (5432)"),
         "policies/db.yaml: billing/db-allow: spec.ingress[0].ports[1].endPort: must be >= port (5432)"),
        (InputError("inventory host db1", "", "netpol_addresses[1]", "'fd00::zz' is not an IP address"),
         "inventory host db1: netpol_addresses[1]: 'fd00::zz' is not an IP address"),
        (InputError("x.yaml", "", "", "invalid YAML"), "x.yaml: invalid YAML"),
    ],
)
def test_an_error_reads_source_object_field_message(error, text):
    assert str(error) == text


def test_errors_are_listed_one_per_line_and_survive_pickling():
    errors = InputErrors([InputError("a", "", "f", "m1"), InputError("b", "ns/n", "", "m2")])
    assert str(errors) == "a: f: m1\nb: ns/n: m2"
    assert pickle.loads(pickle.dumps(errors)).errors == errors.errors


def test_errors_raised_without_a_location_get_the_readers():
    problems = Problems("file.yaml", "ns/name")
    problems.extend(InputErrors([InputError("", "", "spec.podSelector", "bad"), InputError("other", "o/x", "", "kept")]))
    assert [str(e) for e in problems.errors] == ["file.yaml: ns/name: spec.podSelector: bad", "other: o/x: kept"]
    with pytest.raises(InputErrors):
        problems.raise_if_any()
