# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.conntrack.flows import delete, delete_argv, parse_list
from ansible_collections.netpol.fleet.plugins.module_utils.engine.tightening import Flow
from ansible_collections.netpol.fleet.plugins.module_utils.tools import ToolError

# As conntrack v1.4.7 prints them (-o extended).
LISTED = """\
ipv4     2 tcp      6 431999 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=39842 dport=5432 src=10.0.0.2 dst=10.0.0.1 \
sport=5432 dport=39842 [ASSURED] mark=0 zone=7 use=1
ipv4     2 udp      17 29 src=10.0.0.2 dst=10.0.0.53 sport=5353 dport=53 [UNREPLIED] src=10.0.0.53 dst=10.0.0.2 \
sport=53 dport=5353 mark=0 use=1
ipv4     2 icmp     1 29 src=10.0.0.2 dst=10.0.0.1 type=8 code=0 id=7 src=10.0.0.1 dst=10.0.0.2 type=0 code=0 id=7 \
mark=0 use=1
"""


def test_tcp_and_udp_entries_by_their_original_tuple_and_zone():
    assert parse_list(LISTED, 4) == [Flow(4, "TCP", "10.0.0.1", "10.0.0.2", 39842, 5432, 7),
                                     Flow(4, "UDP", "10.0.0.2", "10.0.0.53", 5353, 53, 0)]
    assert parse_list(LISTED, 6) == []


def test_a_deletion_names_one_entry_by_its_whole_tuple_and_zone():
    flow = Flow(6, "TCP", "fd00::1", "fd00::2", 40000, 5432, 7)
    assert delete_argv("conntrack", flow) == ["conntrack", "-D", "-f", "ipv6", "-p", "tcp", "-s", "fd00::1", "-d",
                                              "fd00::2", "--sport", "40000", "--dport", "5432", "-w", "7"]


class Runner:
    def __init__(self, rc):
        self.rc, self.calls = rc, []

    def run_command(self, argv, **kwargs):
        self.calls.append(argv)
        return self.rc, "", "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted."


def test_an_entry_that_ended_meanwhile_is_not_an_error_but_a_failure_is():
    flow = Flow(4, "TCP", "10.0.0.1", "10.0.0.2", 1, 2)
    delete(Runner(1), "conntrack", [flow])
    with pytest.raises(ToolError, match="rc=2"):
        delete(Runner(2), "conntrack", [flow])
