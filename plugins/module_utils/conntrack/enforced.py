# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The state our chains and sets enforce now, read back from the kernel as a HostState.

Judging connections against what the kernel holds (not against what a controller sent) means the
entries deleted are exactly those the rules in force deny. Standard library only, Python 3.9.
"""

from __future__ import annotations

from typing import Iterable, List, Sequence

from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import HostState, IpSet, Jump, Table
from ansible_collections.netpol.fleet.plugins.module_utils.ipset.sets import read_state
from ansible_collections.netpol.fleet.plugins.module_utils.ipset.text import SavedSet, parse_member
from ansible_collections.netpol.fleet.plugins.module_utils.iptables.chains import Owned, read
from ansible_collections.netpol.fleet.plugins.module_utils.iptables.text import rule_target

FAMILIES = ("ipv4", "ipv6")


def enforced_state(module, ipset: str, chain_prefix: str, set_prefixes: Sequence[str]) -> HostState:
    saved = read_state(module, ipset, (), tuple(set_prefixes))[0]
    tables = tuple(_table(f, read(module, f, "filter", chain_prefix), chain_prefix) for f in FAMILIES)
    return state_of(saved.values(), tables)


def state_of(sets: Iterable[SavedSet], tables: Sequence[Table]) -> HostState:
    """A HostState of sets as `ipset save` (or a set file) gives them, and tables."""
    return HostState(host="", sets=tuple(IpSet(s.name, s.type, s.family, tuple(parse_member(e) for e in s.entries),
                                               s.options) for s in sets), tables=tuple(tables))


def _table(family: str, owned: Owned, prefix: str) -> Table:
    return Table(family, "filter", owned.chains, tuple(_jumps(owned, prefix)))


def _jumps(owned: Owned, prefix: str) -> List[Jump]:
    """Our jumps in the built-in chains, at the positions they hold."""
    jumps = []
    for base in owned.base:
        for position, rule in enumerate(base.rules, 1):
            target = rule_target(rule)
            if target and target.startswith(prefix):
                match = rule.rpartition("-j %s" % target)[0].strip()
                jumps.append(Jump(base.name, target, match, position))
    return jumps
