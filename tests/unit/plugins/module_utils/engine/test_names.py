# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import CHAIN_NAME_MAX, SET_NAME_MAX, SET_TEMP_SUFFIX
from ansible_collections.netpol.fleet.plugins.module_utils.engine.names import (
    comment_match,
    nflog_prefix,
    quote,
    set_name,
    stable_hash,
    workload_chain,
)


def test_names_are_stable_short_and_prefixed():
    assert set_name(4, "pods {app=web|} in namespace shop") == set_name(4, "pods {app=web|} in namespace shop")
    assert set_name(4, "k") != set_name(6, "k") and set_name(4, "k") != set_name(4, "k2")
    assert set_name(6, "k").startswith("netpol6-") and len(set_name(6, "k" * 500) + SET_TEMP_SUFFIX) <= SET_NAME_MAX
    chain = workload_chain("ingress", "shop/" + "w" * 300)
    assert chain.startswith("NETPOL-I-") and len(chain) <= CHAIN_NAME_MAX
    assert workload_chain("egress", "shop/web").startswith("NETPOL-E-")
    assert stable_hash("x") == stable_hash("x") and stable_hash("x").isalnum()


@pytest.mark.parametrize("value, saved", [
    ("a_b-c", "a_b-c"),
    ("ns/pol ingress[0]", '"ns/pol ingress[0]"'),
    ("privileged-ssh", "privileged-ssh"),
    ("x.y", '"x.y"'),
])
def test_quoting_follows_iptables_save(value, saved):
    assert quote(value) == saved


def test_comments_and_log_prefixes_are_clamped_and_sanitised():
    assert comment_match("a" * 300) == "-m comment --comment " + "a" * 255
    assert comment_match('say "hi"; rm') == '-m comment --comment "say _hi__ rm"'
    assert nflog_prefix("p" * 100) == "p" * 63
