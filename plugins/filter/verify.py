# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the verify role: flows to probe from hostvars, and measured against expected."""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: netpol_flow_targets
short_description: The flows one host must probe to measure reachability
version_added: 0.1.0
author:
  - netpol.fleet contributors
description:
  - Filters of the C(netpol.fleet.verify) role, all in this file.
  - C(hostvars | netpol.fleet.netpol_flow_targets(src, hosts, extra_ports)) lists the flow records
    (C(src), C(dst), C(address), C(family), C(protocol), C(port)) from O(src) to every other host of
    O(hosts): each address in C(netpol_addresses) (default, the gathered IPv4/IPv6 addresses that
    are not link-local) times each TCP/UDP port in C(netpol_ports) plus O(extra_ports).
  - C(measured | netpol.fleet.netpol_flow_compare(expected)) returns C(checked), C(mismatches),
    C(unexpected) (measured flows the expectation lacks) and C(unmeasured) (the reverse).
  - C(measured | netpol.fleet.netpol_flow_mismatches(expected)) returns only the mismatches.
  - C(mismatches | netpol.fleet.netpol_flow_table) renders mismatches as an aligned text table.
  - C(measured | netpol.fleet.netpol_flow_summary) renders a source by destination grid of
    reachable/probed counts.
options:
  _input:
    description: C(hostvars).
    type: dict
    required: true
  src:
    description: The probing host.
    type: str
    required: true
  hosts:
    description: The hosts to probe (O(src) itself is skipped).
    type: list
    elements: str
    required: true
  extra_ports:
    description: Ports probed on every host besides its own C(netpol_ports).
    type: list
    elements: dict
"""

EXAMPLES = r"""
- name: Probe every other host
  netpol.fleet.netpol_probe:
    targets: "{{ hostvars | netpol.fleet.netpol_flow_targets(inventory_hostname, ansible_play_hosts) }}"

- name: Show mismatches
  ansible.builtin.debug:
    msg: "{{ measured | netpol.fleet.netpol_flow_mismatches(expected) | netpol.fleet.netpol_flow_table }}"
"""

RETURN = r"""
_value:
  description: Flow records without C(reachable), sorted by destination, address, protocol and port.
  type: list
  elements: dict
"""

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ansible.errors import AnsibleFilterError
from ansible_collections.netpol.fleet.plugins.module_utils import verify

Endpoint = Tuple[List[str], List[Mapping[str, Any]]]


def gathered_addresses(facts: Mapping[str, Any]) -> List[str]:
    """Global addresses from facts; link-local ones need a scope and are not what policies name."""
    return list(facts.get("all_ipv4_addresses") or []) + [
        address for address in facts.get("all_ipv6_addresses") or [] if not address.lower().startswith("fe80")
    ]


def host_endpoint(host: str, variables: Mapping[str, Any]) -> Endpoint:
    addresses = variables.get("netpol_addresses") or gathered_addresses(variables.get("ansible_facts") or {})
    if not addresses:
        raise AnsibleFilterError("netpol verify: host %s has no netpol_addresses and no gathered addresses" % host)
    return list(addresses), list(variables.get("netpol_ports") or [])


def netpol_flow_targets(hostvars: Mapping[str, Any], src: str, hosts: Sequence[str],
                        extra_ports: Optional[Iterable[Mapping[str, Any]]] = None) -> List[Dict[str, Any]]:
    try:
        endpoints = {host: host_endpoint(host, hostvars[host]) for host in hosts}
        return verify.flow_targets(src, endpoints, extra_ports)
    except (KeyError, TypeError, ValueError) as error:
        raise AnsibleFilterError("netpol verify: bad address or port: %s" % error) from error


def netpol_flow_compare(measured: Iterable[Mapping[str, Any]],
                        expected: Iterable[Mapping[str, Any]]) -> Dict[str, Any]:
    try:
        return verify.compare_flows(measured, expected)
    except (KeyError, TypeError, ValueError) as error:
        raise AnsibleFilterError("netpol verify: bad flow record (need src, dst, address, protocol, port, "
                                 "reachable): %s" % error) from error


def netpol_flow_mismatches(measured: Iterable[Mapping[str, Any]],
                           expected: Iterable[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    return netpol_flow_compare(measured, expected)["mismatches"]


class FilterModule:
    def filters(self):
        return {
            "netpol_flow_targets": netpol_flow_targets,
            "netpol_flow_compare": netpol_flow_compare,
            "netpol_flow_mismatches": netpol_flow_mismatches,
            "netpol_flow_table": verify.mismatch_table,
            "netpol_flow_summary": verify.matrix_summary,
        }
