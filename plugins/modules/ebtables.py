#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ebtables
short_description: Own a set of ebtables (bridge) chains and their jumps, applied atomically
version_added: 0.2.0
description:
  - Manages every chain whose name starts with O(prefix) in one ebtables table (V(filter) or V(nat)),
    together with the rules in built-in chains that jump to them.
  - Reads C(ebtables-save -t TABLE) once and compares the owned chains and jumps with the desired ones
    as text. Desired rules are first rewritten into the form ebtables-nft prints (MACs in lowercase,
    protocol numbers as names, options in each extension's order, limits with their burst, NFLOG with
    its group), so a rule written as C(-s 02:00:0A:00:00:01) compares equal to what the kernel prints.
  - When they differ, the desired chains are first restored into a scratch network namespace
    (C(unshare --net)) and read back there, because ebtables-restore has no C(--test). A rule ebtables
    rejects, or prints in another form than the desired text, fails the task before the real table is
    touched.
  - The difference is then applied in one C(ebtables-restore --noflush) transaction. Only chains that
    differ are rewritten; owned chains no longer desired are removed; owned jumps are deleted by
    position (ebtables-nft cannot delete an C(--among-src) rule by specification). Foreign chains and
    rules are never mentioned, so they stay byte-identical; the table is never flushed or restored whole.
  - After applying, the owned state is read back; if it is not what was planned, or any step fails,
    the previous owned state is restored and the task fails with the tool's own message.
author:
  - netpol.fleet contributors (@netpol)
requirements:
  - ebtables-nft (the nf_tables backend of ebtables 1.8) with ebtables-save and ebtables-restore
  - unshare (util-linux), for the scratch network namespace
options:
  table:
    description: The ebtables table holding the chains.
    type: str
    choices: [filter, nat]
    default: filter
  chains:
    description:
      - Every owned chain that should exist, with its complete rule list. Owned chains not listed are removed.
      - ebtables-nft does not apply a policy to user chains (a frame that falls off the end returns), so
        none is taken; end a chain with an explicit rule such as C(-j DROP) to decide every frame.
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
          - Rule specifications as ebtables takes them, without the leading C(-A CHAIN), for example
            C(-p IPv4 -s 02:00:0a:00:00:01 --ip-src 10.0.0.5 -j RETURN). A target is a verdict
            (C(ACCEPT), C(DROP), C(RETURN), C(CONTINUE)), an extension target or one of the owned chains.
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
        description:
          - The built-in chain holding the jump, V(INPUT), V(FORWARD) or V(OUTPUT) in V(filter);
            V(PREROUTING), V(OUTPUT) or V(POSTROUTING) in V(nat).
        type: str
        required: true
      target:
        description: The owned chain to jump to; must be listed in O(chains).
        type: str
        required: true
      match:
        description: Match specification before C(-j), for example C(-i vm1).
        type: str
        default: ""
      position:
        description: 1-based position in the built-in chain; a position past the end means last.
        type: int
        default: 1
  prefix:
    description: The name prefix that marks chains as owned by this module. Nothing else is touched.
    type: str
    default: NETPOL-
  state:
    description:
      - V(present) makes the owned chains and jumps exactly O(chains) and O(jumps).
      - V(absent) removes every owned chain and jump of O(table); O(chains) and O(jumps) are ignored.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Reads the kernel and reports the change and the restore text without applying it.
  diff_mode:
    support: full
    description: Shows each owned chain, and the jumps, before and after.
notes:
  - There is no xtables lock for ebtables-nft (ebtables-restore refuses C(--concurrent)); each restore
    is one nf_tables transaction, and the state is read back after it.
  - The legacy ebtables backend is refused.
seealso:
  - module: netpol.fleet.netpol_chain
  - name: ebtables(8)
    description: Rule syntax, the among, arp, ip, ip6, vlan, limit and nflog extensions.
    link: https://man7.org/linux/man-pages/man8/ebtables.8.html
"""

EXAMPLES = r"""
- name: Anti-spoofing for one VM port, checked before the bridge learns the source MAC
  netpol.fleet.ebtables:
    table: nat
    chains:
      - name: NETPOL-L2-VM1
        rules:
          - -s ! 02:00:0a:00:00:05 -j DROP
          - -p ARP --arp-ip-src 10.0.0.5 --arp-mac-src 02:00:0a:00:00:05 -j RETURN
          - -p IPv4 --ip-src 10.0.0.5 -j RETURN
          - --limit 5/min --limit-burst 10 --nflog-prefix "netpol L2 deny vm1" --nflog-group 5 -j DROP
          - -j DROP
    jumps:
      - chain: PREROUTING
        target: NETPOL-L2-VM1
        match: -i vm1

- name: Remove every chain and jump this collection owns in the bridge nat table
  netpol.fleet.ebtables:
    table: nat
    state: absent
"""

RETURN = r"""
chains:
  description: Owned chain names created, rewritten and removed.
  returned: always
  type: dict
  contains:
    created:
      description: Chains that did not exist.
      type: list
      elements: str
    updated:
      description: Chains whose rules were rewritten.
      type: list
      elements: str
    removed:
      description: Owned chains deleted because they are no longer desired.
      type: list
      elements: str
  sample: {"created": ["NETPOL-L2-VM1"], "updated": [], "removed": []}
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
  sample: {"added": ["-I PREROUTING 1 -i vm1 -j NETPOL-L2-VM1"], "removed": []}
rules:
  description: The desired rules of each owned chain in the form ebtables-save prints them.
  returned: when O(state=present)
  type: dict
  sample: {"NETPOL-L2-VM1": ["-s ! 02:00:0a:00:00:05 -j DROP", "-j DROP"]}
commands:
  description: The ebtables-restore input; empty when nothing changes.
  returned: in check mode or with -vv
  type: str
  sample: "*nat\n:NETPOL-L2-VM1 RETURN\n-A NETPOL-L2-VM1 -j DROP\n-I PREROUTING 1 -i vm1 -j NETPOL-L2-VM1\nCOMMIT\n"
"""

from typing import Any, Dict, List

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.netpol.fleet.plugins.module_utils.ebtables.chains import (
    FAMILY,
    ChainError,
    Outcome,
    Owned,
    converge,
    owned_text,
)
from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import CHAIN_PREFIX, Chain, Jump, Table
from ansible_collections.netpol.fleet.plugins.module_utils.tools import ToolError

ARGUMENT_SPEC = dict(
    table=dict(type="str", default="filter", choices=["filter", "nat"]),
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
        ),
    ),
    prefix=dict(type="str", default=CHAIN_PREFIX),
    state=dict(type="str", default="present", choices=["present", "absent"]),
)


def desired_table(params: Dict[str, Any]) -> Table:
    if params["state"] == "absent":
        return Table(family=FAMILY, name=params["table"])
    chains = tuple(Chain(c["name"], tuple(c["rules"])) for c in params["chains"])
    jumps = tuple(Jump(**j) for j in params["jumps"])
    return Table(family=FAMILY, name=params["table"], chains=chains, jumps=jumps)


def summarize(outcome: Outcome) -> Dict[str, Any]:
    plan = outcome.plan
    return dict(
        changed=plan.changed,
        chains=dict(created=list(plan.created), updated=list(plan.updated), removed=list(plan.removed)),
        jumps=dict(added=list(plan.jumps_added), removed=list(plan.jumps_removed)),
    )


def diff(outcome: Outcome, prefix: str) -> List[Dict[str, str]]:
    """One before/after per owned chain, then one for the jumps of the built-in chains."""
    table = outcome.table.name
    before = {c.name: c for c in outcome.before.chains}
    after = {c.name: c for c in outcome.after.chains}
    entries = []
    for name in sorted(set(before) | set(after)):
        header = "bridge %s %s" % (table, name)
        entries.append(dict(
            before_header=header,
            after_header=header,
            before=owned_text(Owned(chains=(before[name],)), prefix) if name in before else "",
            after=owned_text(Owned(chains=(after[name],)), prefix) if name in after else "",
        ))
    header = "bridge %s jumps" % table
    entries.append(dict(
        before_header=header,
        after_header=header,
        before=owned_text(Owned(base=outcome.before.base), prefix),
        after=owned_text(Owned(base=outcome.after.base), prefix),
    ))
    return entries


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    prefix = module.params["prefix"]
    try:
        outcome = converge(module, [desired_table(module.params)], prefix, module.check_mode)[0]
    except (ChainError, ToolError) as e:
        module.fail_json(msg=str(e))
    result = summarize(outcome)
    if module.params["state"] == "present":
        result["rules"] = {c.name: list(c.rules) for c in outcome.after.chains}
    if module.check_mode or module._verbosity >= 2:
        result["commands"] = outcome.plan.restore
    if module._diff:
        result["diff"] = diff(outcome, prefix)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
