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
  - A hypervisor (a host with O(hosts[].bridges)) has no O(interface); it gets those Linux bridges instead,
    its addresses on the first one (its management bridge, as on Harvester). The first bridge is uplinked
    to the switch's O(bridge) by a veth whose switch end is named after the hypervisor's namespace; every
    other bridge to a switch bridge of its own name (one L2 network per bridge name, across hypervisors).
    The global C(bridge-nf-call-iptables) and C(bridge-nf-call-ip6tables) of a hypervisor are 0, as
    Harvester forces them, so only per-bridge flags let iptables see its bridged traffic.
  - A VM (a host with O(hosts[].attach)) is a namespace whose O(interface), with a fixed MAC, is a veth
    whose other end is a port of one of its hypervisor's bridges.
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
  routers:
    description:
      - Addresses of a router in the switch namespace, per switch bridge (C(lab_routers)), a list of
        addresses for each bridge name. With any, the switch forwards IPv4 and IPv6 between its bridges,
        as the router between VLAN networks outside the hypervisors does.
    type: dict
    default: {}
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
      gateways:
        description: Default routes of the host, one address per family (C(lab_gateways)).
        type: list
        elements: str
        default: []
      bridges:
        description: A hypervisor's bridges (C(lab_bridges)); the first one holds its addresses.
        type: list
        elements: str
        default: []
      attach:
        description: Where a VM is plugged in (C(lab_vm)).
        type: dict
        suboptions:
          hypervisor:
            description: The inventory name of the hypervisor.
            type: str
            required: true
          bridge:
            description: The hypervisor's bridge.
            type: str
            required: true
          port:
            description: The name of the bridge port, the VM's C(interface) in C(netpol_workloads).
            type: str
            required: true
          mac:
            description: The MAC address of the VM's interface.
            type: str
            required: true
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

- name: A hypervisor with two bridges and a VM on the second one
  netpol.fleet.netns_lab:
    switch: lab-sw
    hosts:
      - {name: lab-hv1, namespace: lab-hv1, addresses: [10.42.0.101/24], bridges: [mgmt-br, vlan20]}
      - name: lab-vm1
        namespace: lab-vm1
        addresses: [10.20.0.1/24, fd20::1/64]
        attach: {hypervisor: lab-hv1, bridge: vlan20, port: vm1, mac: "52:54:00:00:20:01"}
"""

RETURN = r"""
commands:
  description: The C(ip) commands run (or, in check mode, that would run), in order.
  returned: always
  type: list
  elements: str
  sample: ["ip netns add lab-web1", "ip -n lab-web1 link set lo up"]
"""

import hashlib
import ipaddress
import json
import os
import re
from typing import Dict, List, NamedTuple, Optional, Set, Tuple

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.netpol.fleet.plugins.module_utils.engine.validate import read_cidr, read_ip
from ansible_collections.netpol.fleet.plugins.module_utils.tools import ToolError, run

NETNS_RUN_DIR = "/run/netns"
IFNAMSIZ = 15  # usable characters of a Linux interface name (16 with the terminating NUL)
VALID_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
VALID_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
NF_CALL_OFF = ["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0", "net.bridge.bridge-nf-call-ip6tables=0"]


class LabError(Exception):
    """The lab description is wrong; the message names the host and the field."""


class Attach(NamedTuple):
    """Where a VM is plugged in: a port of a bridge of a hypervisor (by namespace)."""

    hypervisor: str  # the hypervisor's namespace
    bridge: str
    port: str
    mac: str


class Host(NamedTuple):
    name: str
    namespace: str
    addresses: Set[str]  # normalised "ip/prefixlen"
    bridges: Tuple[str, ...] = ()  # a hypervisor's bridges; the first holds its addresses
    attach: Optional[Attach] = None  # a VM's bridge port
    gateways: Tuple[str, ...] = ()  # default routes, one per family


class Observed(NamedTuple):
    namespaces: Set[str]
    bridge: bool
    ports: Set[str]  # switch ports, i.e. namespace names of attached hosts
    links: Dict[str, bool]  # namespace -> its address device (interface, or first bridge) exists and is up
    addresses: Dict[str, Set[str]]  # namespace -> global addresses on that device
    interfaces: Dict[str, Dict[str, dict]] = {}  # namespace (switch, hypervisors, VMs) -> ifname -> ip -j link
    nf_call_off: Set[str] = set()  # hypervisor namespaces whose global bridge-nf-call-* are 0
    routes: Dict[str, Set[str]] = {}  # namespace -> gateways of its default routes
    router: Dict[str, Set[str]] = {}  # switch bridge -> its addresses; key "" present when forwarding is on


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
        bridges = tuple(check_ifname("host %s: lab_bridges" % name, b) for b in spec.get("bridges") or ())
        if len(set(bridges)) != len(bridges):
            raise LabError("host %s: lab_bridges: %s lists a bridge twice" % (name, list(bridges)))
        try:
            gateways = tuple(str(ipaddress.ip_address(g)) for g in spec.get("gateways") or ())
        except ValueError as e:
            raise LabError("host %s: lab_gateways: %s" % (name, e))
        hosts.append(Host(name, namespace, addresses, bridges, gateways=gateways))
    return attach_vms(hosts, params["hosts"])


def parse_routers(params: dict) -> Dict[str, Set[str]]:
    """lab_routers: switch bridge -> normalised addresses, or LabError naming the bridge."""
    routers = {}
    for name, addresses in (params.get("routers") or {}).items():
        check_ifname("lab_routers", name)
        if not isinstance(addresses, list):
            raise LabError("lab_routers: %s: a list of addresses, got %r" % (name, addresses))
        try:
            routers[name] = {normalise_address("", a, params["prefix4"], params["prefix6"]) for a in addresses}
        except LabError:
            raise LabError("lab_routers: %s: %r are not all IPv4 or IPv6 addresses" % (name, addresses))
    return routers


def check_ifname(where: str, name: object) -> str:
    if not isinstance(name, str) or not VALID_NAME.match(name) or len(name) > IFNAMSIZ or name in (".", ".."):
        raise LabError("%s: %r is not a usable interface name (letters, digits, '.', '_', '-'; at most %d)"
                       % (where, name, IFNAMSIZ))
    return name


def attach_vms(hosts: List[Host], specs: List[dict]) -> List[Host]:
    """Hosts with their attach resolved: the hypervisor exists and has the bridge; ports and MACs unique."""
    by_name = {h.name: h for h in hosts}
    seen_ports: Dict[Tuple[str, str], str] = {}
    seen_macs: Dict[str, str] = {}
    result = []
    for host, spec in zip(hosts, specs):
        given = spec.get("attach")
        if not given:
            result.append(host)
            continue
        where = "host %s: lab_vm" % host.name
        hypervisor = by_name.get(given["hypervisor"])
        if host.bridges:
            raise LabError("%s: a host is a VM or a hypervisor (lab_bridges), not both" % where)
        if hypervisor is None or given["bridge"] not in hypervisor.bridges:
            raise LabError("%s.bridge: %r is not a bridge of a lab hypervisor %r (its lab_bridges)"
                           % (where, given["bridge"], given["hypervisor"]))
        port = check_ifname(where + ".port", given["port"])
        mac = str(given["mac"]).lower()
        if not VALID_MAC.match(mac):
            raise LabError("%s.mac: %r is not a MAC address like 52:54:00:12:34:56" % (where, given["mac"]))
        for key, table, what in (((hypervisor.name, port), seen_ports, "port"), (mac, seen_macs, "mac")):
            if key in table:
                raise LabError("%s.%s: %r is also the %s of host %s" % (where, what, given[what], what, table[key]))
            table[key] = host.name
        result.append(host._replace(attach=Attach(hypervisor.namespace, given["bridge"], port, mac)))
    return result


def uplink_name(namespace: str, bridge: str, index: int) -> str:
    """The veth between a hypervisor's bridge and the switch: its first bridge's is named after the
    namespace (so the switch's ports still name the lab's members), the others by a short hash."""
    if index == 0:
        return namespace
    return "u" + hashlib.sha256(("%s/%s" % (namespace, bridge)).encode()).hexdigest()[:12]


# ---- planning: pure, desired vs observed -> commands ----------------------------------------


def plan_present(hosts: List[Host], seen: Observed, switch: str, bridge: str, interface: str,
                 routers: Optional[Dict[str, Set[str]]] = None) -> List[Step]:
    steps: List[Step] = []
    if switch not in seen.namespaces:
        steps.append(Step("the switch", ["netns", "add", switch]))
    if not seen.bridge:
        steps += [Step("the switch", ["-n", switch, "link", "add", bridge, "type", "bridge", "mcast_snooping", "0"]),
                  Step("the switch", ["-n", switch, "link", "set", bridge, "up"])]
    for name in sorted({b for host in hosts for b in host.bridges[1:]}):
        if name not in seen.interfaces.get(switch, {}):
            steps += [Step("the switch", ["-n", switch, "link", "add", name, "type", "bridge", "mcast_snooping", "0"]),
                      Step("the switch", ["-n", switch, "link", "set", name, "up"])]
    steps += plan_router(routers or {}, seen, switch)
    wanted = {host.namespace for host in hosts}
    steps += plan_removal(sorted(seen.ports - wanted), seen, switch)
    for host in sorted(hosts, key=lambda h: h.attach is not None):  # hypervisors before their VMs
        if host.bridges:
            steps += plan_hypervisor(host, seen, switch, bridge)
        elif host.attach:
            steps += plan_vm(host, seen, interface)
        else:
            steps += plan_host(host, seen, switch, bridge, interface)
        steps += [Step(host.name, argv) for argv in plan_routes(host, seen)]
    return steps


def plan_router(routers: Dict[str, Set[str]], seen: Observed, switch: str) -> List[Step]:
    """The switch's addresses on its bridges, and forwarding between them."""
    steps = []
    for name, addresses in sorted(routers.items()):
        present = seen.router.get(name, set())
        steps += [["-n", switch, "address", "add", a, "dev", name] + (["nodad"] if ":" in a else [])
                  for a in sorted(addresses - present)]
    if routers and "" not in seen.router:
        steps.append(["netns", "exec", switch, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"])
    return [Step("the switch", argv) for argv in steps]


def plan_routes(host: Host, seen: Observed) -> List[List[str]]:
    present = seen.routes.get(host.namespace, set())
    return [["-n", host.namespace] + (["-6"] if ":" in g else []) + ["route", "replace", "default", "via", g]
            for g in host.gateways if g not in present]


def plan_namespace(ns: str, seen: Observed) -> List[List[str]]:
    return [] if ns in seen.namespaces else [["netns", "add", ns], ["-n", ns, "link", "set", "lo", "up"]]


def plan_addresses(host: Host, device: str, present: Set[str]) -> List[List[str]]:
    steps = [["-n", host.namespace, "address", "del", a, "dev", device] for a in sorted(present - host.addresses)]
    for address in sorted(host.addresses - present):
        nodad = ["nodad"] if ":" in address else []  # usable at once, no 1s duplicate detection
        steps.append(["-n", host.namespace, "address", "add", address, "dev", device] + nodad)
    return steps


def plan_hypervisor(host: Host, seen: Observed, switch: str, lab_bridge: str) -> List[Step]:
    ns, steps = host.namespace, plan_namespace(host.namespace, seen)
    mine, theirs = seen.interfaces.get(ns, {}), seen.interfaces.get(switch, {})
    if ns not in seen.nf_call_off:
        steps.append(["netns", "exec", ns] + NF_CALL_OFF)
    present = seen.addresses.get(ns, set()) if seen.links.get(ns) else set()
    for index, name in enumerate(host.bridges):
        if name not in mine:
            steps += [["-n", ns, "link", "add", name, "type", "bridge", "mcast_snooping", "0"],
                      ["-n", ns, "link", "set", name, "up"]]
        uplink, network = uplink_name(ns, name, index), lab_bridge if index == 0 else name
        if mine.get(uplink, {}).get("master") != name or theirs.get(uplink, {}).get("master") != network:
            steps += [["-n", ns, "link", "del", uplink]] if uplink in mine else []
            steps += [["-n", switch, "link", "del", uplink]] if uplink in theirs else []
            steps += [["-n", ns, "link", "add", uplink, "type", "veth", "peer", "name", uplink, "netns", switch],
                      ["-n", ns, "link", "set", uplink, "master", name, "up"],
                      ["-n", switch, "link", "set", uplink, "master", network, "up"]]
    steps += plan_addresses(host, host.bridges[0], present)
    return [Step(host.name, argv) for argv in steps]


def plan_vm(host: Host, seen: Observed, interface: str) -> List[Step]:
    ns, at = host.namespace, host.attach
    if at is None:
        raise LabError("host %s: lab_vm is missing" % host.name)
    steps = plan_namespace(ns, seen)
    mine, hypervisor = seen.interfaces.get(ns, {}), seen.interfaces.get(at.hypervisor, {})
    present = seen.addresses.get(ns, set())
    if interface not in mine or hypervisor.get(at.port, {}).get("master") != at.bridge:
        steps += [["-n", ns, "link", "del", interface]] if interface in mine else []
        steps += [["-n", at.hypervisor, "link", "del", at.port]] if at.port in hypervisor else []
        steps += [["-n", ns, "link", "add", interface, "address", at.mac, "type", "veth",
                   "peer", "name", at.port, "netns", at.hypervisor],
                  ["-n", at.hypervisor, "link", "set", at.port, "master", at.bridge, "up"],
                  ["-n", ns, "link", "set", interface, "up"]]
        present = set()
    elif mine[interface].get("address") != at.mac:
        steps.append(["-n", ns, "link", "set", interface, "address", at.mac])
    steps += plan_addresses(host, interface, present)
    return [Step(host.name, argv) for argv in steps]


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
    links, addresses, interfaces, nf_call_off = {}, {}, {}, set()
    bridged = any(h.bridges for h in hosts)
    if has_switch and bridged:
        interfaces[switch] = links_of(module, ip, switch)
    for host in hosts:
        if host.namespace not in namespaces:
            continue
        if host.bridges or host.attach:
            interfaces[host.namespace] = links_of(module, ip, host.namespace)
        if host.bridges and nf_call_is_off(module, ip, host.namespace):
            nf_call_off.add(host.namespace)
        device = host.bridges[0] if host.bridges else interface
        shown = ip_json(module, ip, ["-n", host.namespace, "address", "show", "dev", device])
        if shown:
            links[host.namespace] = "UP" in shown[0].get("flags", [])
            addresses[host.namespace] = {
                "%s/%d" % (ipaddress.ip_address(a["local"]), a["prefixlen"])
                for a in shown[0].get("addr_info", []) if a.get("scope") == "global"
            }
    routes = {h.namespace: default_routes(module, ip, h.namespace) for h in hosts
              if h.gateways and h.namespace in namespaces}
    return Observed(namespaces, bool(bridge_links), {p["ifname"] for p in ports or []}, links, addresses,
                    interfaces, nf_call_off, routes, router_of(module, ip, switch) if has_switch else {})


def default_routes(module: AnsibleModule, ip: str, namespace: str) -> Set[str]:
    found = set()
    for family in ("-4", "-6"):
        for route in ip_json(module, ip, ["-n", namespace, family, "route", "show", "default"]) or []:
            if route.get("gateway"):
                found.add(str(ipaddress.ip_address(route["gateway"])))
    return found


def router_of(module: AnsibleModule, ip: str, switch: str) -> Dict[str, Set[str]]:
    router = {link["ifname"]: {"%s/%d" % (ipaddress.ip_address(a["local"]), a["prefixlen"])
                               for a in link.get("addr_info", []) if a.get("scope") == "global"}
              for link in ip_json(module, ip, ["-n", switch, "address", "show"]) or []}
    rc, out, _err = run(module, [ip, "netns", "exec", switch, "sysctl", "-n", "net.ipv4.ip_forward",
                                 "net.ipv6.conf.all.forwarding"], check=False)
    if rc == 0 and out.split() == ["1", "1"]:
        router[""] = set()
    return router


def links_of(module: AnsibleModule, ip: str, namespace: str) -> Dict[str, dict]:
    return {link["ifname"]: link for link in ip_json(module, ip, ["-n", namespace, "link", "show"]) or []}


def nf_call_is_off(module: AnsibleModule, ip: str, namespace: str) -> bool:
    argv = [ip, "netns", "exec", namespace, "sysctl", "-n", "net.bridge.bridge-nf-call-iptables",
            "net.bridge.bridge-nf-call-ip6tables"]
    rc, out, _err = run(module, argv, check=False)
    return rc == 0 and out.split() == ["0", "0"]


def main() -> None:
    attach_options = dict(hypervisor=dict(type="str", required=True), bridge=dict(type="str", required=True),
                          port=dict(type="str", required=True), mac=dict(type="str", required=True))
    host_options = dict(name=dict(type="str", required=True), namespace=dict(type="str", required=True),
                        addresses=dict(type="list", elements="str"),
                        bridges=dict(type="list", elements="str", default=[]),
                        gateways=dict(type="list", elements="str", default=[]),
                        attach=dict(type="dict", options=attach_options))
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "absent"], default="present"),
            switch=dict(type="str", required=True),
            bridge=dict(type="str", default="br0"),
            routers=dict(type="dict", default={}),
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
        steps = plan_present(hosts, seen, p["switch"], p["bridge"], p["interface"], parse_routers(p))
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
