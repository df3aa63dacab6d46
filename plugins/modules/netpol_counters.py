#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: netpol_counters
short_description: Read the hit counters of the collection's iptables and ip6tables rules
description:
  - Reads C(iptables-save -c) and C(ip6tables-save -c) of one table and returns every rule of the chains
    whose name starts with O(prefix), in order, with its packet and byte counters.
  - Counters are only read, never zeroed; read twice and subtract to see what some traffic matched
    (the C(netpol.fleet.explain) role does so around a probe).
  - Read-only; runs in check mode too.
version_added: 0.1.0
author:
  - netpol.fleet contributors (@netpol-fleet)
options:
  families:
    description: Address families to read.
    type: list
    elements: int
    choices: [4, 6]
    default: [4, 6]
  table:
    description: The table.
    type: str
    default: filter
  prefix:
    description: Chains whose name starts with this are read.
    type: str
    default: NETPOL-
attributes:
  check_mode:
    support: full
    description: Reading changes nothing, so it runs in check mode as well.
  diff_mode:
    support: none
    description: Reading changes nothing, so there is no diff.
seealso:
  - module: netpol.fleet.netpol_chain
"""

EXAMPLES = r"""
- name: Read the counters of our rules
  netpol.fleet.netpol_counters:
  register: netpol_counters_before
"""

RETURN = r"""
rules:
  description: Every rule of the owned chains, in chain order.
  returned: always
  type: list
  elements: dict
  contains:
    family:
      description: 4 or 6.
      type: int
    table:
      description: The table.
      type: str
    chain:
      description: The chain.
      type: str
    index:
      description: Position of the rule in its chain, from 1.
      type: int
    rule:
      description: The rule as iptables-save prints it, without C(-A CHAIN).
      type: str
    packets:
      description: Packets the rule matched.
      type: int
    bytes:
      description: Bytes the rule matched.
      type: int
  sample:
    - {family: 4, table: filter, chain: NETPOL-I-abc, index: 3, packets: 2, bytes: 120,
       rule: '-m comment --comment "billing/lab-db isolated for ingress" -j DROP'}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.netpol.fleet.plugins.module_utils.iptables import counters
from ansible_collections.netpol.fleet.plugins.module_utils.tools import ToolError


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            families=dict(type="list", elements="int", choices=[4, 6], default=[4, 6]),
            table=dict(type="str", default="filter"),
            prefix=dict(type="str", default="NETPOL-"),
        ),
        supports_check_mode=True,
    )
    rules = []
    try:
        for family in sorted(set(module.params["families"])):
            rules += counters.read(module, family, module.params["table"], module.params["prefix"])
    except ToolError as error:
        module.fail_json(msg="netpol_counters: %s" % error)
    module.exit_json(changed=False, rules=rules)


if __name__ == "__main__":
    main()
