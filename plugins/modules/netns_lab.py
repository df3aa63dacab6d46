#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: netns_lab
short_description: Build or tear down a lab of network namespaces on one bridge
description:
  - Makes the controller's network namespaces match a lab description, changing only what differs.
  - One switch namespace holds a Linux bridge; each host is a namespace whose O(interface) is a veth
    to the bridge, carrying exactly the host's addresses (IPv6 without duplicate address detection, so
    they are usable at once).
  - The switch port of a host is named after the host's namespace, so the lab's members are read back
    from the kernel; hosts that left the description are removed.
  - Every host is validated before anything changes; errors name the inventory host and the field.
  - Used by the P(netpol.fleet.lab#role) role; runs on the controller.
version_added: 0.1.0
author:
  - netpol.fleet contributors (@netpol)
options:
  state:
    description: V(present) builds or converges the lab, V(absent) deletes every namespace of it.
    type: str
    choices: [present, absent]
    default: present
  switch:
    description: Name of the switch namespace.
    type: str
    required: true
  bridge:
    description: Name of the bridge inside the switch namespace.
    type: str
    default: br0
  interface:
    description: Name of each host's interface to the bridge.
    type: str
    default: eth0
  ip_executable:
    description: The iproute2 C(ip) command, by name or path.
    type: str
    default: ip
  prefix4:
    description: Prefix length of IPv4 addresses given without one.
    type: int
    default: 24
  prefix6:
    description: Prefix length of IPv6 addresses given without one.
    type: int
    default: 64
  hosts:
    description: The lab's hosts.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Inventory host name (used in messages).
        type: str
        required: true
      namespace:
        description: Network namespace name (the host's C(ansible_host)).
        type: str
        required: true
      addresses:
        description: The host's C(netpol_addresses), IPv4 and IPv6, each with or without a prefix length.
        type: list
        elements: str
notes:
  - Needs root and the iproute2 C(ip) command on the controller.
"""

EXAMPLES = r"""
- name: Build two hosts on the switch lab-sw
  netpol.fleet.netns_lab:
    switch: lab-sw
    hosts:
      - {name: lab-web1, namespace: lab-web1, addresses: [10.42.0.11/24, fd42::11/64]}
      - {name: lab-db, namespace: lab-db, addresses: [10.42.0.21/24, fd42::21/64]}
"""

RETURN = r"""
commands:
  description: The C(ip) commands run (or, in check mode, that would run), in order.
  returned: always
  type: list
  elements: str
  sample: ["ip netns add lab-web1", "ip -n lab-web1 link set lo up"]
"""

import ipaddress
import json
import os
import re
from typing import Dict, List, NamedTuple, Optional, Set

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.netpol.fleet.plugins.module_utils.engine.validate import read_cidr, read_ip
from ansible_collections.netpol.fleet.plugins.module_utils.tools import ToolError, run

NETNS_RUN_DIR = "/run/netns"
IFNAMSIZ = 15  # usable characters of a Linux interface name (16 with the terminating NUL)
VALID_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class LabError(Exception):
    """The lab description is wrong; the message names the host and the field."""


class Host(NamedTuple):
    name: str
    namespace: str
    addresses: Set[str]  # normalised "ip/prefixlen"


class Observed(NamedTuple):
    namespaces: Set[str]
    bridge: bool
    ports: Set[str]  # switch ports, i.e. namespace names of attached hosts
    links: Dict[str, bool]  # namespace -> its interface exists and is up
    addresses: Dict[str, Set[str]]  # namespace -> global addresses on its interface


class Step(NamedTuple):
    host: str  # who the command is for, for messages
    argv: List[str]


# ---- validation: pure, before anything changes ----------------------------------------------


def check_namespace(where: str, namespace: str) -> str:
    """`where` names the host and field (or the variable) the namespace name came from."""
    if not VALID_NAME.match(namespace or "") or namespace in (".", ".."):
        raise LabError("%s %r is not a usable namespace name (letters, digits, '.', '_', '-')" % (where, namespace))
    if len(namespace) > IFNAMSIZ:
        raise LabError("%s %r is %d characters; the lab names the host's switch port after its "
                       "namespace and interface names must fit IFNAMSIZ (%d)"
                       % (where, namespace, len(namespace), IFNAMSIZ))
    return namespace


def normalise_address(host: str, address: object, prefix4: int, prefix6: int) -> str:
    """ip/prefixlen of an interface address; the grammar is the compile step's (netmasks, '/08',
    IPv4-mapped IPv6 rejected), so the lab never builds a host the policies could not name."""
    text = str(address).strip()
    try:
        if "/" in text:
            read_cidr(text)
        ip = read_ip(text.partition("/")[0])
    except ValueError as reason:
        raise LabError("host %s: netpol_addresses: %r is not an IPv4 or IPv6 address: %s" % (host, address, reason))
    if "/" not in text:
        text += "/%d" % (prefix4 if ip.version == 4 else prefix6)
    return ipaddress.ip_interface(text).with_prefixlen


def parse_hosts(params: dict) -> List[Host]:
    """Validated hosts, or LabError naming the first bad host and field."""
    hosts: List[Host] = []
    owner_of_namespace: Dict[str, str] = {params["switch"]: "the switch"}
    owner_of_ip: Dict[str, str] = {}
    for spec in params["hosts"]:
        name, namespace = spec["name"], check_namespace("host %s: ansible_host" % spec["name"], spec["namespace"])
        if namespace in owner_of_namespace:
            raise LabError("host %s: ansible_host %r is already the namespace of %s"
                           % (name, namespace, owner_of_namespace[namespace]))
        owner_of_namespace[namespace] = "host %s" % name
        addresses = set()
        if params["state"] == "present":
            if not spec.get("addresses"):
                raise LabError("host %s: netpol_addresses is missing or empty; every lab host needs "
                               "its IPv4/IPv6 addresses" % name)
            for address in spec["addresses"]:
                interface = normalise_address(name, address, params["prefix4"], params["prefix6"])
                ip = interface.split("/")[0]
                if ip in owner_of_ip:
                    raise LabError("host %s: netpol_addresses: %s is also an address of host %s"
                                   % (name, ip, owner_of_ip[ip]))
                owner_of_ip[ip] = name
                addresses.add(interface)
        hosts.append(Host(name, namespace, addresses))
    return hosts


# ---- planning: pure, desired vs observed -> commands ----------------------------------------


def plan_present(hosts: List[Host], seen: Observed, switch: str, bridge: str, interface: str) -> List[Step]:
    steps: List[Step] = []
    if switch not in seen.namespaces:
        steps.append(Step("the switch", ["netns", "add", switch]))
    if not seen.bridge:
        steps += [Step("the switch", ["-n", switch, "link", "add", bridge, "type", "bridge", "mcast_snooping", "0"]),
                  Step("the switch", ["-n", switch, "link", "set", bridge, "up"])]
    wanted = {host.namespace for host in hosts}
    steps += plan_removal(sorted(seen.ports - wanted), seen, switch)
    for host in hosts:
        steps += plan_host(host, seen, switch, bridge, interface)
    return steps


def plan_host(host: Host, seen: Observed, switch: str, bridge: str, interface: str) -> List[Step]:
    ns, steps = host.namespace, []
    if ns not in seen.namespaces:
        steps += [["netns", "add", ns], ["-n", ns, "link", "set", "lo", "up"]]
    if not seen.links.get(ns) or ns not in seen.ports:
        if ns in seen.links or ns in seen.ports:  # half a pair: start again from nothing
            steps += [["-n", ns, "link", "del", interface]] if ns in seen.links else []
            steps += [["-n", switch, "link", "del", ns]] if ns in seen.ports else []
        steps += [["-n", ns, "link", "add", interface, "type", "veth", "peer", "name", ns, "netns", switch],
                  ["-n", switch, "link", "set", ns, "master", bridge, "up"],
                  ["-n", ns, "link", "set", interface, "up"]]
        present: Set[str] = set()
    else:
        present = seen.addresses.get(ns, set())
    for address in sorted(present - host.addresses):
        steps.append(["-n", ns, "address", "del", address, "dev", interface])
    for address in sorted(host.addresses - present):
        nodad = ["nodad"] if ":" in address else []  # usable at once, no 1s duplicate detection
        steps.append(["-n", ns, "address", "add", address, "dev", interface] + nodad)
    return [Step(host.name, argv) for argv in steps]


def plan_removal(namespaces: List[str], seen: Observed, switch: str) -> List[Step]:
    """Unplug first: a deleted namespace's veth lingers until the kernel reaps the namespace."""
    steps: List[Step] = []
    for ns in namespaces:
        if ns in seen.ports:
            steps.append(Step(ns, ["-n", switch, "link", "del", ns]))
        if ns in seen.namespaces:
            steps.append(Step(ns, ["netns", "del", ns]))
    return steps


def plan_absent(hosts: List[Host], seen: Observed, switch: str) -> List[Step]:
    members = sorted(seen.ports | {host.namespace for host in hosts})
    steps = plan_removal(members, seen, switch)
    if switch in seen.namespaces:
        steps.append(Step("the switch", ["netns", "del", switch]))
    return steps


# ---- the kernel -------------------------------------------------------------------------------


def ip_json(module: AnsibleModule, ip: str, argv: List[str]) -> Optional[list]:
    """`ip -j ...` parsed, or None when the object does not exist."""
    rc, out, _err = run(module, [ip, "-j"] + argv, check=False)
    return json.loads(out or "[]") if rc == 0 else None


def observe(module: AnsibleModule, ip: str, hosts: List[Host], switch: str, bridge: str, interface: str) -> Observed:
    namespaces = set(os.listdir(NETNS_RUN_DIR)) if os.path.isdir(NETNS_RUN_DIR) else set()
    has_switch = switch in namespaces
    bridge_links = ip_json(module, ip, ["-n", switch, "link", "show", "dev", bridge]) if has_switch else None
    ports = ip_json(module, ip, ["-n", switch, "link", "show", "master", bridge]) if bridge_links else None
    links, addresses = {}, {}
    for host in hosts:
        if host.namespace not in namespaces:
            continue
        shown = ip_json(module, ip, ["-n", host.namespace, "address", "show", "dev", interface])
        if shown:
            links[host.namespace] = "UP" in shown[0].get("flags", [])
            addresses[host.namespace] = {
                "%s/%d" % (ipaddress.ip_address(a["local"]), a["prefixlen"])
                for a in shown[0].get("addr_info", []) if a.get("scope") == "global"
            }
    return Observed(namespaces, bool(bridge_links), {p["ifname"] for p in ports or []}, links, addresses)


def main() -> None:
    host_options = dict(name=dict(type="str", required=True), namespace=dict(type="str", required=True),
                        addresses=dict(type="list", elements="str"))
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "absent"], default="present"),
            switch=dict(type="str", required=True),
            bridge=dict(type="str", default="br0"),
            interface=dict(type="str", default="eth0"),
            ip_executable=dict(type="str", default="ip"),
            prefix4=dict(type="int", default=24),
            prefix6=dict(type="int", default=64),
            hosts=dict(type="list", elements="dict", default=[], options=host_options),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        check_namespace("lab_switch", p["switch"])
        hosts = parse_hosts(p)
    except LabError as e:
        module.fail_json(msg="lab: %s" % e)
    ip = module.get_bin_path(p["ip_executable"])
    if ip is None:
        module.fail_json(msg="lab: lab_ip_executable %r: the iproute2 `ip` command is not installed on the "
                             "controller; it is needed for hosts %s (run `make deps`)"
                             % (p["ip_executable"], ", ".join(h.name for h in hosts)))
    seen = observe(module, ip, hosts, p["switch"], p["bridge"], p["interface"])
    if p["state"] == "present":
        steps = plan_present(hosts, seen, p["switch"], p["bridge"], p["interface"])
    else:
        steps = plan_absent(hosts, seen, p["switch"])
    commands = [" ".join(["ip"] + step.argv) for step in steps]
    if not module.check_mode:
        for step in steps:
            try:
                run(module, [ip] + step.argv)
            except ToolError as e:
                module.fail_json(msg="lab: host %s: %s" % (step.host, e), commands=commands)
    module.exit_json(changed=bool(steps), commands=commands)


if __name__ == "__main__":
    main()
