# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

from dataclasses import asdict

from ansible_collections.netpol.fleet.plugins.module_utils.ipset.text import render_restore, set_arguments
from ansible_collections.netpol.fleet.plugins.module_utils.engine.tightening import Flow, denied_flows
from ansible_collections.netpol.fleet.plugins.modules.netpol_conntrack import compiled_state, given_state

from ansible_collections.netpol.fleet.tests.unit.plugins.module_utils.engine.test_tightening import (
    DB_FROM_WEB,
    DB_LOCAL,
    db_state,
)


def test_check_mode_judges_by_the_compiled_state_as_the_role_passes_it():
    # --check: the new rules are not in the kernel; the role passes netpol_compile's hosts[HOST].
    state = db_state(DB_FROM_WEB)
    flows = [Flow(4, "TCP", "10.0.0.1", "10.0.0.2", 1, 5432), Flow(4, "TCP", "10.0.0.1", "10.0.0.2", 2, 22),
             Flow(6, "TCP", "fd00::7", "fd00::2", 3, 5432)]
    # a host state with its sets' members (netpol_compile's hosts[h] names sets only, by digest)
    passed = compiled_state({"sets": [set_arguments(x) for x in state.sets], "tables": [asdict(t) for t in state.tables]})
    assert denied_flows(passed, flows, DB_LOCAL) == denied_flows(state, flows, DB_LOCAL)
    assert [d.flow.sport for d in denied_flows(passed, flows, DB_LOCAL)] == [2, 3]


def test_check_mode_judges_the_tables_and_the_set_file_the_action_sends_like_the_state_itself(tmp_path):
    # --check through the role: hosts[HOST].tables, and the host's sets as one `ipset save` text.
    state = db_state(DB_FROM_WEB)
    flows = [Flow(4, "TCP", "10.0.0.1", "10.0.0.2", 1, 5432), Flow(4, "TCP", "10.0.0.9", "10.0.0.2", 2, 5432),
             Flow(6, "TCP", "fd00::7", "fd00::2", 3, 5432)]
    sent = tmp_path / "netpol-host-sets.ipset"
    sent.write_text(render_restore(state.sets))
    passed = given_state([asdict(t) for t in state.tables], [str(sent)])
    assert denied_flows(passed, flows, DB_LOCAL) == denied_flows(state, flows, DB_LOCAL)
    assert [d.flow.sport for d in denied_flows(passed, flows, DB_LOCAL)] == [2, 3]
