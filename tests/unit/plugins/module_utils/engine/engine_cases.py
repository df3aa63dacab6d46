# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small fleet and manifest helpers shared by the engine's table-driven tests."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from ansible_collections.netpol.fleet.plugins.module_utils.engine.fleet import load_fleet
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import CompileOptions, Fleet, Policy, PrivilegedRule
from ansible_collections.netpol.fleet.plugins.module_utils.engine.parse import load_policies

# shop: web and db (dual stack); ops: api (IPv4 only, its "http" is 8080); other: mon.
INVENTORY: Dict[str, Dict[str, Any]] = {
    "web": {"netpol_namespace": "shop", "netpol_labels": {"app": "web", "tier": "front"},
            "netpol_addresses": ["10.0.1.1", "fd00:1::1"],
            "netpol_ports": [{"name": "http", "port": 80}]},
    "db": {"netpol_namespace": "shop", "netpol_labels": {"app": "db"},
           "netpol_addresses": ["10.0.1.2", "fd00:1::2"],
           "netpol_ports": [{"name": "pg", "port": 5432}, {"name": "dns", "port": 53, "protocol": "UDP"},
                            {"name": "http", "port": 80}]},
    "api": {"netpol_namespace": "ops", "netpol_labels": {"app": "api"},
            "netpol_addresses": ["10.0.2.1"],
            "netpol_ports": [{"name": "http", "port": 8080}]},
    "mon": {"netpol_namespace": "other", "netpol_labels": {"app": "mon"},
            "netpol_addresses": ["10.0.3.1", "fd00:3::1"]},
}
# SSH from the management range stays open whatever the policies say.
OPTIONS = CompileOptions(privileged=(PrivilegedRule("ssh", "ingress", "TCP", (22, 22), ("192.0.2.0/24",)),))
NAMESPACES = {"shop": {"labels": {"team": "a"}}, "ops": {"labels": {"team": "b"}}, "other": {}}


def fleet(inventory: Optional[Dict[str, Dict[str, Any]]] = None) -> Fleet:
    return load_fleet(INVENTORY if inventory is None else inventory, NAMESPACES)


def policy(namespace: str, name: str, spec: Dict[str, Any]) -> Dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def policies(*manifests: Dict[str, Any]) -> Tuple[Policy, ...]:
    return load_policies(list(manifests), [])[0]


def select(app: str) -> Dict[str, Any]:
    return {"matchLabels": {"app": app}}


NOT_FRONT = {"namespaceSelector": {},
             "podSelector": {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["front"]}]}}
# Every row: (id, manifests, flow (src, dst, port, protocol, family), allowed, reason fragment).
# src/dst are host names (workloads) or addresses outside the fleet.
CASES = [
    ("no policy: not isolated", [], ("web", "db", 5432, "TCP", 4), True, "not isolated"),
    ("podSelector {} with no rules isolates all in namespace",
     [policy("shop", "deny", {"podSelector": {}})], ("api", "web", 80, "TCP", 4), False, "shop/deny"),
    ("policy in another namespace does not select",
     [policy("ops", "deny", {"podSelector": {}})], ("web", "db", 5432, "TCP", 4), True, "not isolated"),
    ("policyTypes default: ingress only, egress stays open",
     [policy("shop", "deny", {"podSelector": {}})], ("web", "api", 8080, "TCP", 4), True, "not isolated for egress"),
    ("ingress-only policy leaves egress of its targets open",
     [policy("shop", "deny", {"podSelector": {}})], ("db", "mon", 9, "TCP", 4), True, "not isolated"),
    ("egress present: Egress type added",
     [policy("shop", "out", {"podSelector": select("web"), "egress": [{"to": [{"podSelector": select("db")}]}]})],
     ("web", "api", 8080, "TCP", 4), False, "isolated for egress by shop/out"),
    ("egress rule allows its peer",
     [policy("shop", "out", {"podSelector": select("web"), "egress": [{"to": [{"podSelector": select("db")}]}]})],
     ("web", "db", 5432, "TCP", 4), True, "shop/out egress[0]"),
    ("explicit Egress type with no rules denies all egress",
     [policy("shop", "out", {"podSelector": select("web"), "policyTypes": ["Egress"]})],
     ("web", "db", 5432, "TCP", 6), False, "isolated for egress"),
    ("ingress [{}] allows all",
     [policy("shop", "all", {"podSelector": {}, "ingress": [{}]})], ("mon", "db", 1234, "UDP", 4), True, "shop/all ingress[0]"),
    ("ingress [{}] allows external sources",
     [policy("shop", "all", {"podSelector": {}, "ingress": [{}]})], ("192.0.2.9", "db", 2222, "TCP", 4), True, "ingress[0]"),
    ("podSelector peer means the policy's namespace only",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"from": [{"podSelector": {}}]}]})],
     ("api", "db", 5432, "TCP", 4), False, "no rule matched"),
    ("podSelector peer in the policy's namespace",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"from": [{"podSelector": {}}]}]})],
     ("web", "db", 5432, "TCP", 4), True, "shop/p ingress[0]"),
    ("namespaceSelector {} means every namespace",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"from": [{"namespaceSelector": {}}]}]})],
     ("mon", "db", 5432, "TCP", 6), True, "shop/p ingress[0]"),
    ("namespaceSelector never matches external addresses",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"from": [{"namespaceSelector": {}}]}]})],
     ("192.0.2.9", "db", 5432, "TCP", 4), False, "no rule matched"),
    ("namespace and pod selector in one peer are ANDed",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"from": [
         {"namespaceSelector": {"matchLabels": {"team": "b"}}, "podSelector": select("mon")}]}]})],
     ("mon", "db", 5432, "TCP", 4), False, "no rule matched"),
    ("namespace and pod selector ANDed: both match",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"from": [
         {"namespaceSelector": {"matchLabels": {"team": "b"}}, "podSelector": select("api")}]}]})],
     ("api", "db", 5432, "TCP", 4), True, "shop/p ingress[0]"),
    ("peers in one list are ORed",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"from": [
         {"namespaceSelector": {"matchLabels": {"team": "b"}}}, {"podSelector": select("mon")}]}]})],
     ("api", "db", 5432, "TCP", 4), True, "shop/p ingress[0]"),
    ("namespace by name through kubernetes.io/metadata.name",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"from": [
         {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "other"}}}]}]})],
     ("mon", "db", 5432, "TCP", 4), True, "ingress[0]"),
    ("matchExpressions NotIn matches pods lacking the key",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"from": [NOT_FRONT]}]})],
     ("api", "db", 5432, "TCP", 4), True, "ingress[0]"),
    ("matchExpressions NotIn excludes the value",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"from": [NOT_FRONT]}]})],
     ("web", "db", 5432, "TCP", 4), False, "no rule matched"),
    ("matchExpressions DoesNotExist on the target selector",
     [policy("shop", "p", {"podSelector": {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}})],
     ("web", "db", 5432, "TCP", 4), False, "shop/p"),
    ("ipBlock allows its cidr",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"from": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]}]})],
     ("192.0.2.9", "db", 5432, "TCP", 4), True, "ingress[0]"),
    ("ipBlock except removes addresses",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"from": [
         {"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.8/29"]}}]}]})],
     ("192.0.2.9", "db", 5432, "TCP", 4), False, "no rule matched"),
    ("except removes addresses from its own peer only",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"from": [
         {"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.8/29"]}}, {"ipBlock": {"cidr": "192.0.2.9/32"}}]}]})],
     ("192.0.2.9", "db", 5432, "TCP", 4), True, "ingress[0]"),
    ("ipBlock 0.0.0.0/0 covers every IPv4 address",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]})],
     ("203.0.113.200", "db", 5432, "TCP", 4), True, "ingress[0]"),
    ("ipBlock ::/0 covers every IPv6 address",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"from": [{"ipBlock": {"cidr": "::/0"}}]}]})],
     ("2001:db8::9", "db", 5432, "TCP", 6), True, "ingress[0]"),
    ("ipBlock matches workload addresses too",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.3.0/24"}}]}]})],
     ("mon", "db", 5432, "TCP", 4), True, "ingress[0]"),
    ("an all-IPv4 policy still isolates IPv6",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]})],
     ("mon", "db", 5432, "TCP", 6), False, "no rule matched"),
    ("ports: numeric TCP",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"ports": [{"port": 5432}]}]})],
     ("web", "db", 5432, "TCP", 4), True, "ingress[0]"),
    ("ports: TCP is the default protocol, UDP does not match",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"ports": [{"port": 5432}]}]})],
     ("web", "db", 5432, "UDP", 4), False, "no rule matched"),
    ("ports: another port does not match",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"ports": [{"port": 5432}]}]})],
     ("web", "db", 5433, "TCP", 4), False, "no rule matched"),
    ("ports: UDP",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]})],
     ("web", "db", 53, "UDP", 6), True, "ingress[0]"),
    ("ports: SCTP",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"ports": [{"port": 5000, "protocol": "SCTP"}]}]})],
     ("web", "db", 5000, "SCTP", 4), True, "ingress[0]"),
    ("ports: protocol without port = every port of it",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"ports": [{"protocol": "UDP"}]}]})],
     ("web", "db", 40000, "UDP", 4), True, "ingress[0]"),
    ("ports: endPort range includes its end",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"ports": [{"port": 5000, "endPort": 5010}]}]})],
     ("web", "db", 5010, "TCP", 4), True, "ingress[0]"),
    ("ports: endPort range excludes beyond",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"ports": [{"port": 5000, "endPort": 5010}]}]})],
     ("web", "db", 5011, "TCP", 4), False, "no rule matched"),
    ("named port resolves on the ingress target",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"ports": [{"port": "pg"}]}]})],
     ("web", "db", 5432, "TCP", 4), True, "ingress[0]"),
    ("named port unknown on the target allows nothing",
     [policy("shop", "p", {"podSelector": select("db"), "ingress": [{"ports": [{"port": "nope"}]}]})],
     ("web", "db", 5432, "TCP", 4), False, "no rule matched"),
    ("egress named port resolves per destination (8080 on api)",
     [policy("shop", "p", {"podSelector": select("web"), "egress": [{"ports": [{"port": "http"}]}]})],
     ("web", "api", 8080, "TCP", 4), True, "egress[0]"),
    ("egress named port resolves per destination (80 on db)",
     [policy("shop", "p", {"podSelector": select("web"), "egress": [{"ports": [{"port": "http"}]}]})],
     ("web", "db", 80, "TCP", 6), True, "egress[0]"),
    ("egress named port: another workload's number does not count",
     [policy("shop", "p", {"podSelector": select("web"), "egress": [{"ports": [{"port": "http"}]}]})],
     ("web", "api", 80, "TCP", 4), False, "no rule matched"),
    ("egress named port never matches an external address",
     [policy("shop", "p", {"podSelector": select("web"), "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                                                                     "ports": [{"port": "http"}]}]})],
     ("web", "192.0.2.9", 80, "TCP", 4), False, "no rule matched"),
    ("policies are additive",
     [policy("shop", "a", {"podSelector": select("db"), "ingress": [{"ports": [{"port": 1}]}]}),
      policy("shop", "b", {"podSelector": select("db"), "ingress": [{"ports": [{"port": 5432}]}]})],
     ("web", "db", 5432, "TCP", 4), True, "shop/b ingress[0]"),
    ("the denial names every isolating policy",
     [policy("shop", "a", {"podSelector": select("db"), "ingress": [{"ports": [{"port": 1}]}]}),
      policy("shop", "b", {"podSelector": {}})],
     ("web", "db", 5432, "TCP", 4), False, "isolated for ingress by shop/a, shop/b; no rule matched"),
    ("needs egress at source AND ingress at destination",
     [policy("shop", "in", {"podSelector": select("db"), "ingress": [{}]}),
      policy("shop", "out", {"podSelector": select("web"), "policyTypes": ["Egress"]})],
     ("web", "db", 5432, "TCP", 4), False, "isolated for egress"),
    ("a workload always reaches itself",
     [policy("shop", "deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})],
     ("db", "10.0.1.2", 5432, "TCP", 4), True, "node-local"),
    ("privileged rule keeps a path open",
     [policy("shop", "deny", {"podSelector": {}})], ("192.0.2.1", "db", 22, "TCP", 4), True, "privileged ssh"),
    ("privileged rule is scoped to its cidr",
     [policy("shop", "deny", {"podSelector": {}})], ("198.51.100.1", "db", 22, "TCP", 4), False, "no rule matched"),
]
