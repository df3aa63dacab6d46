#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: netpol_conntrack
short_description: Cut the established connections the collection's rules in force deny
version_added: 0.1.0
description:
  - The collection's chains let packets of established connections through first (C(RELATED,ESTABLISHED)), so a
    connection allowed when it started survives a policy that denies it now, as long as its conntrack entry lives.
  - This module reads the owned chains (C(NETPOL-)) and sets (C(netpol4-), C(netpol6-)) the kernel holds, lists the
    TCP, UDP and SCTP conntrack entries of both families, judges each by its original direction (towards one of the
    host's addresses is ingress, from one of them egress) as a new connection, and deletes exactly the entries the
    rules would drop, each by its whole original tuple and zone. The next packet of such a connection is new again
    and is dropped. Never the whole table; node-local and forwarded entries are left alone.
  - Run it after the rules are applied. Privileged paths (the controller's SSH...) are allowed by the rules, so
    their connections are never cut.
author:
  - netpol.fleet contributors (@netpol)
requirements:
  - conntrack (conntrack-tools), iptables-save, ip6tables-save, ipset, ip (iproute2)
options:
  prefix:
    description: The name prefix of the owned chains.
    type: str
    default: NETPOL-
  set_prefixes:
    description: The name prefixes of the owned sets.
    type: list
    elements: str
    default: [netpol4-, netpol6-]
  tables:
    description:
      - The compiled tables to judge the connections by instead of the chains in the kernel (as
        M(netpol.fleet.netpol_host) takes them, netpol_compile's C(hosts[HOST].tables)), with O(sets) and O(set_store)
        for their sets. The enforce role passes them in check mode, when the new rules are not in the kernel.
    type: list
    elements: dict
  sets:
    description:
      - With O(tables), the host's sets by name, each the digest of its content in O(set_store)
        (netpol_compile's C(hosts[HOST].sets)). The action plugin sends their text to the host as one file.
    type: dict
  set_store:
    description: The controller's directory of set files (netpol_compile's C(set_store)). Required with O(sets).
    type: path
  set_src:
    description:
      - Files on the managed host holding the sets of O(tables) as C(ipset save) prints them. The action plugin
        fills it from O(sets); give it directly only when the files are on the host already.
    type: list
    elements: path
  desired:
    description:
      - A host state (C(sets) with their members, as M(netpol.fleet.ipset) takes them, and C(tables)) to judge
        the connections by instead of the chains and sets in the kernel. Mutually exclusive with O(tables).
    type: dict
attributes:
  check_mode:
    support: full
    description: Lists the connections that would be cut without deleting anything.
  diff_mode:
    support: full
    description: Shows the cut connections as removed lines.
notes:
  - The enforce role runs it when C(netpol_conntrack_cut) is true (the default) and the sets or chains changed
    (or, in check mode, would change). In check mode it judges by the compiled state, so C(--check) lists the
    connections the run would cut.
seealso:
  - name: conntrack(8)
    description: The connection tracking tool.
    link: https://manpages.debian.org/bookworm/conntrack/conntrack.8.en.html
"""

EXAMPLES = r"""
- name: Cut the connections the new rules deny
  netpol.fleet.netpol_conntrack:

- name: List the connections the compiled state would cut, before it is applied
  netpol.fleet.netpol_conntrack:
    tables: "{{ netpol_compiled.hosts[inventory_hostname].tables }}"
    sets: "{{ netpol_compiled.hosts[inventory_hostname].sets }}"
    set_store: "{{ netpol_compiled.set_store }}"
  check_mode: true
"""

RETURN = r"""
cut:
  description: The connections cut (in check mode, that would be cut), each with the rule that denies it.
  returned: always
  type: list
  elements: dict
  contains:
    flow:
      description: C(PROTOCOL SRC:SPORT -> DST:DPORT zone ZONE), the original direction.
      type: str
    direction:
      description: C(ingress) or C(egress), as the host saw the connection's first packet.
      type: str
    chain:
      description: The owned chain whose rule denies it.
      type: str
    rule:
      description: That rule.
      type: str
  sample: [{"flow": "tcp 10.0.0.1:40312 -> 10.0.0.2:5432 zone 0", "direction": "ingress",
            "chain": "NETPOL-I-vwobv7vkb6w22xsg", "rule": "-m comment --comment \"shop/db isolated for ingress\" -j DROP"}]
"""

from typing import Any, Dict, List

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.netpol.fleet.plugins.module_utils.conntrack.enforced import enforced_state, state_of
from ansible_collections.netpol.fleet.plugins.module_utils.conntrack.flows import delete, local_addresses, read
from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import CHAIN_PREFIX, HostState, IpSet
from ansible_collections.netpol.fleet.plugins.module_utils.engine.tightening import Denied, denied_flows
from ansible_collections.netpol.fleet.plugins.module_utils.ipset.sets import sets_from_text
from ansible_collections.netpol.fleet.plugins.module_utils.ipset.text import parse_member
from ansible_collections.netpol.fleet.plugins.module_utils.iptables.chains import ChainError
from ansible_collections.netpol.fleet.plugins.module_utils.tools import ToolError

ARGUMENT_SPEC = dict(
    prefix=dict(type="str", default=CHAIN_PREFIX),
    set_prefixes=dict(type="list", elements="str", default=["netpol4-", "netpol6-"]),
    tables=dict(type="list", elements="dict"),
    sets=dict(type="dict"),
    set_store=dict(type="path"),
    set_src=dict(type="list", elements="path"),
    desired=dict(type="dict"),
)


def compiled_state(desired: Dict[str, Any]) -> HostState:
    """netpol_compile's per-host result as a HostState (its sets carry members as compact strings)."""
    sets = tuple(IpSet(s["name"], s["type"], s["family"], tuple(parse_member(m) for m in s.get("members", ())),
                       tuple((k, str(v)) for k, v in s.get("options", ()))) for s in desired.get("sets", ()))
    tables = HostState.from_dict({"host": "", "tables": desired.get("tables", ())}).tables
    return HostState(host="", sets=sets, tables=tables)


def given_state(tables: List[Dict[str, Any]], set_src: List[str]) -> HostState:
    """The tables passed and the sets of the files the action plugin sent."""
    texts = []
    for path in set_src:
        with open(path, encoding="utf-8") as text:
            texts.append(text.read())
    return state_of(sets_from_text("\n".join(texts)),
                    HostState.from_dict({"host": "", "tables": tables}).tables)


def judged_state(module) -> HostState:
    """What to judge by: the state given (tables or desired), else the chains and sets in the kernel."""
    p = module.params
    if p["tables"] is not None:
        return given_state(p["tables"], p["set_src"] or [])
    if p["desired"] is not None:
        return compiled_state(p["desired"])
    return enforced_state(module, module.get_bin_path("ipset", required=True), p["prefix"], p["set_prefixes"])


def report(denied: List[Denied]) -> List[Dict[str, Any]]:
    return [dict(flow=str(d.flow), direction=d.direction, chain=d.chain, rule=d.rule) for d in denied]


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           mutually_exclusive=[("tables", "desired")], required_by={"set_src": "tables"})
    tool = module.get_bin_path
    try:
        state = judged_state(module)
        own = local_addresses(module, tool("ip", required=True))
        conntrack = tool("conntrack", required=True)
        denied = denied_flows(state, read(module, conntrack), own)
        if denied and not module.check_mode:
            delete(module, conntrack, [d.flow for d in denied])
    except (ChainError, ToolError, OSError, ValueError, KeyError, TypeError) as e:  # EntryError, PlanError: ValueError
        module.fail_json(msg=str(e))
    cut = report(denied)
    result: Dict[str, Any] = dict(changed=bool(cut), cut=cut)
    if module._diff:
        result["diff"] = dict(before_header="established connections the rules deny",
                              after_header="after the cut",
                              before="".join("%(flow)s (%(direction)s, %(chain)s)\n" % c for c in cut), after="")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
