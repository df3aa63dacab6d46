#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: netpol_bridge
short_description: Per-bridge br_netfilter flags for bridge mode, and where VM ports are
description:
  - Bridge mode (VMs on a hypervisor's bridge ports) needs iptables to see bridged packets. This module
    switches on the per-bridge flags C(nf_call_iptables) and C(nf_call_ip6tables) of the bridges that
    carry managed VM ports; it never touches the global C(net.bridge.bridge-nf-call-*) sysctls.
  - With any such bridge it also switches on the network namespace's
    C(net.bridge.bridge-nf-filter-vlan-tagged) (there is no per-bridge knob), without which 802.1Q-tagged
    frames cross every bridge without meeting iptables; recorded and switched back off like the flags.
  - Only flags that were 0 are switched on, and which ones were is recorded in the kernel, in the ipset
    C(netpol-bridges). A bridge that no longer carries managed ports, and O(state=absent), switch back
    off exactly those flags, so the host ends as it was.
  - O(state=query) changes nothing and reports which bridge each of O(ports) is a port of, whether
    br_netfilter is loaded and whether the global switches already filter every bridge.
  - The P(netpol.fleet.enforce#role) role reads with O(state=query) and switches the flags as a step of
    M(netpol.fleet.netpol_host)'s transaction (its option C(bridges)), so a failed run puts them back;
    the P(netpol.fleet.remove#role) role switches them off with O(state=absent).
version_added: 0.2.0
author:
  - netpol.fleet contributors (@netpol)
options:
  state:
    description:
      - V(present) switches on the flags of O(bridges) and back off those of bridges no longer listed.
      - V(absent) switches back off every flag the collection switched on.
      - V(query) only reads.
    type: str
    choices: [present, absent, query]
    default: present
  bridges:
    description: The bridges whose flags must be on (V(present)).
    type: list
    elements: str
    default: []
  ports:
    description: VM bridge ports to report on (V(query)).
    type: list
    elements: str
    default: []
  fdb:
    description:
      - With O(state=query), also read the bridges' forwarding database (C(bridge -j fdb show)) and report
        which port each MAC the bridges learned is behind (RV(fdb)); those ports are reported in RV(ports)
        too. The compile step finds KubeVirt VMIs' bridge ports this way (docs/kubernetes.md).
    type: bool
    default: false
  ipset_executable:
    description: The C(ipset) command that keeps the record, by name or path.
    type: str
    default: ipset
notes:
  - Needs root, and br_netfilter loaded or built in when O(bridges) is not empty.
  - Supports check mode and diff mode.
attributes:
  check_mode:
    support: full
    description: Reads the flags and the record and reports which flags would switch, without writing.
  diff_mode:
    support: full
    description: Shows each flag of the bridges concerned before and after.
"""

EXAMPLES = r"""
- name: Where are the VM ports, does the kernel filter bridges already?
  netpol.fleet.netpol_bridge:
    state: query
    ports: [vnet0, vnet1]
  register: bridge_facts

- name: Let iptables see the bridged packets of br-vlan10
  netpol.fleet.netpol_bridge:
    bridges: [br-vlan10]

- name: Put every flag back as it was
  netpol.fleet.netpol_bridge:
    state: absent
"""

RETURN = r"""
ports:
  description: Each port of O(ports) that exists, with the bridge it is a port of (null when on none).
  returned: always
  type: dict
  sample: {vnet0: br-vlan10, vnet1: null}
fdb:
  description: With O(fdb), each MAC the bridges learned (or hold as static), lower case, and the ports it is behind.
  returned: when O(fdb) is set
  type: dict
  sample: {"52:54:00:12:34:56": [vnet0]}
missing:
  description: Ports of O(ports) that do not exist on the host.
  returned: always
  type: list
  elements: str
vlan_aware:
  description: The bridges of O(ports) that filter VLANs (C(vlan_filtering) 1); see RV(vlans).
  returned: always
  type: list
  elements: str
vlans:
  description:
    - Every port of each bridge of RV(vlan_aware) (the VMs' ports, and the uplinks and trunks beside them),
      with its VLANs as C(bridge -j vlan show) reports them (read only when there is such a bridge) - C(bridge),
      C(pvid) (null when none), C(untagged) (sent back untagged) and C(tagged). An access port has one VLAN,
      its PVID, untagged. The compile step gives each VLAN with managed VMs a conntrack zone of its own and
      refuses a VM port that is not an access port.
  returned: always
  type: dict
  sample: {vnet0: {bridge: br0, pvid: 10, untagged: [10], tagged: []},
           bond0: {bridge: br0, pvid: null, untagged: [], tagged: [10, 20]}}
br_netfilter:
  description: Whether br_netfilter is loaded (C(/proc/sys/net/bridge) exists).
  returned: always
  type: bool
global_flags:
  description:
    - The global C(bridge-nf-call-iptables) and C(bridge-nf-call-ip6tables) (1 filters every bridge), and
      C(bridge-nf-filter-vlan-tagged) (0 lets 802.1Q-tagged frames skip iptables on every bridge).
  returned: when br_netfilter is loaded
  type: dict
  sample: {nf_call_iptables: 0, nf_call_ip6tables: 0, bridge-nf-filter-vlan-tagged: 0}
switched_on:
  description: C(BRIDGE FLAG) of each flag switched on (or, in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: ["br-vlan10 nf_call_iptables", "net.bridge bridge-nf-filter-vlan-tagged"]
switched_off:
  description: C(BRIDGE FLAG) of each flag put back to 0.
  returned: always
  type: list
  elements: str
record:
  description: The flags the collection has switched on, per bridge (C(net.bridge) for the namespace's sysctl), after the run.
  returned: always
  type: dict
  sample: {br-vlan10: [nf_call_iptables, nf_call_ip6tables], net.bridge: [bridge-nf-filter-vlan-tagged]}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.netpol.fleet.plugins.module_utils.bridge.fdb import FDB_COMMAND, parse_fdb
from ansible_collections.netpol.fleet.plugins.module_utils.bridge.vlans import VLAN_COMMAND, parse_vlans
from ansible_collections.netpol.fleet.plugins.module_utils.tools import run
from ansible_collections.netpol.fleet.plugins.module_utils.bridge.netfilter import (
    BridgeError,
    Plan,
    Sysfs,
    ToolError,
    apply,
    check_bridges,
    flags_of,
    plan,
    port_facts,
    read_record,
    shown,
    with_sysctls,
)


def flag_lines(flags: dict) -> str:
    return "".join("%s %s=%d\n" % (shown(b), f, v[f]) for b, v in sorted(flags.items()) for f in flags_of(b))


def read_fdb(module) -> dict:
    """MAC -> ports, from the kernel's bridge forwarding database (read only)."""
    try:
        return parse_fdb(run(module, [module.get_bin_path(FDB_COMMAND[0], required=True)] + list(FDB_COMMAND[1:]))[1])
    except (ToolError, ValueError) as e:
        module.fail_json(msg="netpol_bridge: cannot read the bridge forwarding database: %s" % e)
    return {}  # not reached: fail_json exits


def read_vlans(module, sysfs: Sysfs, bridges: list) -> dict:
    """The VLANs of every port of the given VLAN-aware bridges, each with its bridge (read only)."""
    owner = {port: bridge for bridge in bridges for port in sysfs.bridge_ports(bridge)}
    if not owner:
        return {}
    try:
        found = parse_vlans(run(module, [module.get_bin_path(VLAN_COMMAND[0], required=True)] + list(VLAN_COMMAND[1:]))[1],
                            sorted(owner))
        return {port: dict(vlans, bridge=owner[port]) for port, vlans in found.items()}
    except (ToolError, ValueError, KeyError, TypeError) as e:
        module.fail_json(msg="netpol_bridge: cannot read the bridges' VLANs: %s" % e)
    return {}  # not reached: fail_json exits


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "absent", "query"], default="present"),
            bridges=dict(type="list", elements="str", default=[]),
            ports=dict(type="list", elements="str", default=[]),
            fdb=dict(type="bool", default=False),
            ipset_executable=dict(type="str", default="ipset"),
        ),
        supports_check_mode=True,
    )
    p, sysfs = module.params, Sysfs()
    learned = read_fdb(module) if p["fdb"] else {}
    ports = list(p["ports"]) + sorted({port for found in learned.values() for port in found} - set(p["ports"]))
    facts = port_facts(sysfs, ports)
    result = dict(changed=False, ports=facts.bridges, missing=list(facts.missing), vlan_aware=list(facts.vlan_aware),
                  vlans=read_vlans(module, sysfs, list(facts.vlan_aware)),
                  br_netfilter=sysfs.br_netfilter(),
                  switched_on=[], switched_off=[], record={})
    if p["fdb"]:
        result["fdb"] = learned
    if result["br_netfilter"]:
        result["global_flags"] = sysfs.global_flags()
    ipset = module.get_bin_path(p["ipset_executable"], required=True)
    try:
        record = read_record(module, ipset)
        result["record"] = {shown(b): list(f) for b, f in record.items()}
        if p["state"] == "query":
            module.exit_json(**result)
        wanted = p["bridges"] if p["state"] == "present" else []
        check_bridges(sysfs, wanted)
        wanted = with_sysctls(wanted)
        known = sorted(set(wanted) | set(record))
        exists = {b: sysfs.is_bridge(b) for b in known}
        flags = {b: sysfs.bridge_flags(b) for b in known if exists[b]}
        the_plan: Plan = plan(wanted, record, flags, exists)
        if (the_plan.changed or the_plan.record != record) and not module.check_mode:
            apply(module, sysfs, ipset, the_plan, record)
    except (BridgeError, ToolError) as e:
        module.fail_json(msg="netpol_bridge: %s" % e, **result)
    after = {b: dict(v) for b, v in flags.items()}
    for bridge, flag in the_plan.switch_on:
        after[bridge][flag] = 1
    for bridge, flag in the_plan.switch_off:
        after[bridge][flag] = 0
    result.update(
        changed=the_plan.changed or the_plan.record != record,
        switched_on=["%s %s" % (shown(b), f) for b, f in the_plan.switch_on],
        switched_off=["%s %s" % (shown(b), f) for b, f in the_plan.switch_off],
        record={shown(b): list(f) for b, f in the_plan.record.items()},
    )
    if module._diff:
        result["diff"] = dict(before=flag_lines(flags), after=flag_lines(after),
                              before_header="bridge flags", after_header="bridge flags")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
