#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: netpol_chain
short_description: Own a set of iptables/ip6tables chains and their jumps, applied atomically
version_added: 0.1.0
description:
  - Manages every chain whose name starts with O(prefix) in one table, for IPv4, IPv6 or both,
    together with the jump rules that enter them from the built-in chains.
  - Reads C(iptables-save -t TABLE) (C(ip6tables-save) for IPv6) once, compares the owned chains
    and jumps with the desired ones as text, and when they differ applies the whole difference in
    one C(iptables-restore --noflush --wait) transaction per family; every family's text is validated
    with C(--test) before the first one is written.
  - Only chains that differ are rewritten; unchanged chains keep their rule counters. Owned chains
    that are no longer desired are removed. Foreign chains, rules and sets are never mentioned in
    the restore text, so they stay byte-identical.
  - After applying, the owned state is read back; if the kernel prints a rule differently from the
    desired text, or any step fails, the previous state is restored and the task fails with the
    tool's own message and the offending line.
author:
  - netpol.fleet contributors (@netpol)
requirements:
  - iptables and ip6tables (nf_tables or legacy backend) with iptables-save and iptables-restore
options:
  table:
    description: The table holding the chains.
    type: str
    choices: [filter, raw, mangle, nat]
    default: filter
  family:
    description:
      - V(ipv4) uses iptables, V(ipv6) uses ip6tables, V(both) applies the same content to both.
    type: str
    choices: [ipv4, ipv6, both]
    default: ipv4
  chains:
    description:
      - Every owned chain that should exist, with its complete rule list. Owned chains not listed are removed.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Chain name; must start with O(prefix) and fit 28 characters.
        type: str
        required: true
      rules:
        description:
          - Rule specifications in the exact form iptables-save prints them, without the leading C(-A CHAIN),
            for example C(-p tcp -m tcp --dport 80 -m set --match-set netpol4-x src -j RETURN).
        type: list
        elements: str
        default: []
  jumps:
    description:
      - The rules in built-in chains that enter the owned chains. Any other rule in a built-in chain
        that jumps to an owned chain is removed.
    type: list
    elements: dict
    default: []
    suboptions:
      chain:
        description: The built-in chain holding the jump, for example V(INPUT), V(FORWARD) or V(OUTPUT).
        type: str
        required: true
      target:
        description: The owned chain to jump to; must be listed in O(chains).
        type: str
        required: true
      match:
        description: Match specification before C(-j), in iptables-save form.
        type: str
        default: ""
      position:
        description:
          - 1-based position in the built-in chain where the jump is inserted; a position past the end means last.
          - A jump already in the chain stays where it is, with the other owned jumps in the same order, even when
            another owner has inserted rules above it since (a warning names them). Moving it back would make two
            owners that both want position 1 swap places on every run. Use O(jumps[].enforce_position) to move it back.
        type: int
        default: 1
      enforce_position:
        description:
          - Move the jump back to O(jumps[].position) on every run, above any foreign rule inserted since.
          - Another tool that does the same takes the position back on its own run, and both report a change every time.
        type: bool
        default: false
  prefix:
    description: The name prefix that marks chains as owned by this module. Nothing else is touched.
    type: str
    default: NETPOL-
  state:
    description:
      - V(present) makes the owned chains and jumps exactly O(chains) and O(jumps).
      - V(absent) removes every owned chain and jump; O(chains) and O(jumps) are ignored.
    type: str
    choices: [present, absent]
    default: present
  delete_empty_table:
    description:
      - With O(state=absent) and the nf_tables backend of iptables, delete the table (C(ip filter),
        C(ip6 filter), ...) when it holds nothing once the owned chains and jumps are gone - no rule,
        no set or other object, only built-in chains with policy accept, a table that filters nothing.
        iptables-nft creates the table on the first restore that names it and never deletes it, so
        without this a host that had no table keeps an empty one after removal.
      - 'A table that was empty before the first enforce is deleted too: ownership is read from the
        kernel, which does not say who created a table, and the empty table and no table filter the
        same packets.'
      - Needs C(nft) (the nftables package); without it the empty table stays and the task warns.
        With the legacy backend the tables are the kernel's and always exist; nothing is deleted.
      - Ignored with O(state=present).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reads the kernel and reports the change and the restore text without applying it.
  diff_mode:
    support: full
    description: Shows the owned chains and jumps before and after, per family.
notes:
  - The enforce role calls this module once per family and table with the content of a
    C(hoststate.Table).
  - The module never flushes a table or a built-in chain.
seealso:
  - name: iptables-restore(8)
    description: The restore format and the C(--noflush) and C(--test) options.
    link: https://man7.org/linux/man-pages/man8/iptables-restore.8.html
"""

EXAMPLES = r"""
- name: A policy chain entered first from INPUT and FORWARD, for IPv4 and IPv6
  netpol.fleet.netpol_chain:
    family: both
    chains:
      - name: NETPOL-INGRESS
        rules:
          - -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN
          - -p tcp -m tcp --dport 5432 -m set --match-set netpol4-app src -j RETURN
          - -m comment --comment "db/default-deny ingress" -j DROP
    jumps:
      - chain: INPUT
        target: NETPOL-INGRESS
      - chain: FORWARD
        target: NETPOL-INGRESS
        match: -m physdev --physdev-is-bridged

- name: Remove every chain and jump this collection owns in the IPv6 filter table
  netpol.fleet.netpol_chain:
    family: ipv6
    state: absent

- name: The same for both families, and delete each filter table that is left holding nothing
  netpol.fleet.netpol_chain:
    family: both
    state: absent
    delete_empty_table: true
"""

RETURN = r"""
chains:
  description: Owned chain names created, rewritten and removed (over all families).
  returned: always
  type: dict
  contains:
    created:
      description: Chains that did not exist.
      type: list
      elements: str
    updated:
      description: Chains whose rules were rewritten (their counters restart).
      type: list
      elements: str
    removed:
      description: Owned chains deleted because they are no longer desired.
      type: list
      elements: str
  sample: {"created": ["NETPOL-INGRESS"], "updated": [], "removed": ["NETPOL-OLD"]}
jumps:
  description: Jump rules inserted and deleted in built-in chains, as C(-I CHAIN POSITION SPEC).
  returned: always
  type: dict
  contains:
    added:
      description: Jumps inserted (or moved to this position).
      type: list
      elements: str
    removed:
      description: Jumps deleted (or moved from this position).
      type: list
      elements: str
  sample: {"added": ["-I INPUT 1 -j NETPOL-INGRESS"], "removed": []}
commands:
  description: The iptables-restore input per family; only families that change are listed.
  returned: in check mode or with -vv
  type: dict
  sample: {"ipv4": "*filter\n:NETPOL-INGRESS - [0:0]\n-A NETPOL-INGRESS -j DROP\n-I INPUT 1 -j NETPOL-INGRESS\nCOMMIT\n"}
tables_deleted:
  description: Tables deleted (in check mode, to be deleted) by O(delete_empty_table), as C(FAMILY TABLE).
  returned: always
  type: list
  elements: str
  sample: ["ipv4 filter", "ipv6 filter"]
"""

from typing import Any, Dict, List

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.netpol.fleet.plugins.module_utils.iptables.chains import ChainError, Outcome, converge, owned_text
from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import CHAIN_PREFIX, Chain, Jump, Table
from ansible_collections.netpol.fleet.plugins.module_utils.nftables.tables import (
    NFT_FAMILIES,
    delete,
    delete_script,
    left_empty,
    read_table,
)
from ansible_collections.netpol.fleet.plugins.module_utils.tools import ToolError

ARGUMENT_SPEC = dict(
    table=dict(type="str", default="filter", choices=["filter", "raw", "mangle", "nat"]),
    family=dict(type="str", default="ipv4", choices=["ipv4", "ipv6", "both"]),
    chains=dict(
        type="list",
        elements="dict",
        default=[],
        options=dict(
            name=dict(type="str", required=True),
            rules=dict(type="list", elements="str", default=[]),
        ),
    ),
    jumps=dict(
        type="list",
        elements="dict",
        default=[],
        options=dict(
            chain=dict(type="str", required=True),
            target=dict(type="str", required=True),
            match=dict(type="str", default=""),
            position=dict(type="int", default=1),
            enforce_position=dict(type="bool", default=False),
        ),
    ),
    prefix=dict(type="str", default=CHAIN_PREFIX),
    state=dict(type="str", default="present", choices=["present", "absent"]),
    delete_empty_table=dict(type="bool", default=False),
)


def desired_tables(params: Dict[str, Any]) -> List[Table]:
    families = ["ipv4", "ipv6"] if params["family"] == "both" else [params["family"]]
    present = params["state"] == "present"
    chains = tuple(Chain(c["name"], tuple(c["rules"])) for c in params["chains"]) if present else ()
    jumps = tuple(Jump(**j) for j in params["jumps"]) if present else ()
    return [Table(family=f, name=params["table"], chains=chains, jumps=jumps) for f in families]


def summarize(outcomes: List[Outcome]) -> Dict[str, Any]:
    def union(field: str) -> List[str]:
        return sorted({name for o in outcomes for name in getattr(o.plan, field)})

    return dict(
        changed=any(o.plan.changed for o in outcomes),
        chains=dict(created=union("created"), updated=union("updated"), removed=union("removed")),
        jumps=dict(added=union("jumps_added"), removed=union("jumps_removed")),
    )


def diff(outcomes: List[Outcome], prefix: str) -> List[Dict[str, str]]:
    return [
        dict(
            before_header="%s %s (owned chains)" % (o.table.family, o.table.name),
            after_header="%s %s (owned chains)" % (o.table.family, o.table.name),
            before=owned_text(o.before, prefix),
            after=owned_text(o.after, prefix),
        )
        for o in outcomes
    ]


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    prefix = module.params["prefix"]
    try:
        outcomes = converge(module, desired_tables(module.params), prefix, module.check_mode)
    except (ChainError, ToolError) as e:
        module.fail_json(msg=str(e))
    for outcome in outcomes:
        for warning in outcome.warnings:
            module.warn(warning)
    result = summarize(outcomes)
    if module.check_mode or module._verbosity >= 2:
        result["commands"] = {o.table.family: o.plan.restore for o in outcomes if o.plan.changed}
    if module._diff:
        result["diff"] = diff(outcomes, prefix)
    deleted: List[Table] = []
    if module.params["state"] == "absent" and module.params["delete_empty_table"]:
        try:
            deleted = delete_empty_tables(module, [o.table for o in outcomes], prefix)
        except ToolError as e:
            module.fail_json(msg=str(e), **result)
    result["tables_deleted"] = ["%s %s" % (t.family, t.name) for t in deleted]
    result["changed"] = result["changed"] or bool(deleted)
    if module._diff:
        result["diff"] += [dict(before_header="%s %s (table)" % (t.family, t.name), after_header="(deleted)",
                                before="table %s %s\n" % (NFT_FAMILIES[t.family], t.name), after="")
                           for t in deleted]
    module.exit_json(**result)


def delete_empty_tables(module, tables: List[Table], prefix: str) -> List[Table]:
    """Delete (in check mode: name) each table that holds nothing once our chains are gone."""
    nft = module.get_bin_path("nft")
    if nft is None:
        if "nf_tables" in module.run_command([module.get_bin_path("iptables", required=True), "-V"])[1]:
            module.warn("nft is missing (package nftables): an empty filter table may be left behind")
        return []
    deleted = []
    for table in tables:
        objects = read_table(module, nft, table.family, table.name)
        if objects is not None and left_empty(objects, prefix):
            if not module.check_mode:
                delete(module, nft, delete_script(table.family, table.name))
            deleted.append(table)
    return deleted


if __name__ == "__main__":
    main()
