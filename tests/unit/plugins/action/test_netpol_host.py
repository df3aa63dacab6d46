# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest
from ansible.errors import AnsibleActionFail

from ansible_collections.netpol.fleet.plugins.action.netpol_host import content_digest, controller_sets

TEXT = "create netpol4-a hash:ip family inet maxelem 65536\nadd netpol4-a 10.0.0.1\n"


def test_sets_are_read_from_the_store_by_digest_and_the_arguments_leave_the_controller_side(tmp_path):
    digest = content_digest(TEXT)
    (tmp_path / (digest + ".ipset")).write_text(TEXT)
    extra = tmp_path / "extra.ipset"
    extra.write_text("create netpol4-b hash:ip family inet maxelem 65536")
    args = {"sets": {"netpol4-a": digest}, "set_store": str(tmp_path), "set_files": [str(extra)], "tables": []}
    texts = controller_sets(args)
    assert texts == [TEXT, "create netpol4-b hash:ip family inet maxelem 65536\n"]
    assert args == {"tables": []}


def test_a_store_file_that_does_not_hold_its_digest_is_an_error_naming_the_set(tmp_path):
    digest = content_digest(TEXT)
    (tmp_path / (digest + ".ipset")).write_text(TEXT + "add netpol4-a 10.0.0.2\n")
    with pytest.raises(AnsibleActionFail, match="set netpol4-a: .* does not hold the content it is named after"):
        controller_sets({"sets": {"netpol4-a": digest}, "set_store": str(tmp_path)})


def test_a_missing_store_file_names_the_set(tmp_path):
    with pytest.raises(AnsibleActionFail, match="set netpol4-a: .*cannot be read"):
        controller_sets({"sets": {"netpol4-a": "0" * 32}, "set_store": str(tmp_path)})
