# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest
from ansible.errors import AnsibleActionFail

from ansible_collections.netpol.fleet.plugins.action.netpol_conntrack import ActionModule
from ansible_collections.netpol.fleet.plugins.action.netpol_host import content_digest

TEXT = "create netpol4-a hash:ip family inet maxelem 65536\nadd netpol4-a 10.0.0.1\n"


def test_the_named_sets_are_read_from_the_store_and_other_arguments_stay_for_the_module(tmp_path):
    digest = content_digest(TEXT)
    (tmp_path / (digest + ".ipset")).write_text(TEXT)
    args = {"sets": {"netpol4-a": digest}, "set_store": str(tmp_path), "tables": [], "set_content": "x"}
    assert ActionModule.controller_sets(args) == [TEXT]
    assert args == {"tables": [], "set_content": "x"}  # the module rejects what it does not know


def test_sets_without_a_store_are_an_error():
    with pytest.raises(AnsibleActionFail, match="netpol_conntrack: sets needs set_store"):
        ActionModule.controller_sets({"sets": {"netpol4-a": "0" * 32}})
