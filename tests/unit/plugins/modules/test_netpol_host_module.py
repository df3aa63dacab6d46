# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""netpol_host's diff: headed by what the desired state was compiled from."""

from __future__ import annotations

from ansible_collections.netpol.fleet.plugins.modules.netpol_host import diff_under

CHAIN = {"before_header": "ipv4 filter chain NETPOL-I-1", "after_header": "ipv4 filter chain NETPOL-I-1",
         "before": "", "after": "-N NETPOL-I-1\n"}
SNAPSHOT = "the Kubernetes snapshot of https://127.0.0.1:6443 at resourceVersions Namespace 12, NetworkPolicy 15"


def test_a_diff_is_headed_by_the_snapshot_it_was_compiled_from():
    assert diff_under([CHAIN], SNAPSHOT) == [{"prepared": "desired state compiled from " + SNAPSHOT}, CHAIN]


def test_no_change_no_header_and_no_source_no_header():
    assert diff_under([], SNAPSHOT) == []
    assert diff_under([CHAIN], None) == [CHAIN]
