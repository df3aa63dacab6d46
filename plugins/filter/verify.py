# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the verify role: flows to probe from hostvars, and measured against expected.

Each filter is documented in the .yml file of its name beside this one."""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ansible.errors import AnsibleFilterError
from ansible_collections.netpol.fleet.plugins.module_utils.verify import flows as verify
from ansible_collections.netpol.fleet.plugins.module_utils.verify.report import report_model

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


def netpol_report_model(measured: Iterable[Mapping[str, Any]], expected: Optional[Iterable[Mapping[str, Any]]],
                        hostvars: Mapping[str, Any]) -> Dict[str, Any]:
    try:
        measured = list(measured or [])
        expected = None if expected is None else list(expected)
        hosts = {str(f[k]) for f in measured + (expected or []) for k in ("src", "dst")}
        namespaces = {host: _namespace_of(hostvars, host) for host in hosts}
        return report_model(measured, expected, namespaces)
    except (KeyError, TypeError, ValueError) as error:
        raise AnsibleFilterError("netpol verify: bad flow record (need src, dst, address, protocol, port, "
                                 "reachable): %s" % error) from error


def _namespace_of(hostvars: Mapping[str, Any], host: str) -> Optional[str]:
    if host not in hostvars:
        return None
    namespace = hostvars[host].get("netpol_namespace")
    return None if namespace is None else str(namespace)


class FilterModule:
    def filters(self):
        return {
            "netpol_flow_targets": netpol_flow_targets,
            "netpol_flow_compare": netpol_flow_compare,
            "netpol_flow_mismatches": netpol_flow_mismatches,
            "netpol_flow_table": verify.mismatch_table,
            "netpol_flow_summary": verify.matrix_summary,
            "netpol_report_model": netpol_report_model,
        }
