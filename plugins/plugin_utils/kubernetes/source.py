# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""netpol_source=kubernetes: one snapshot of the cluster, merged with the inventory's inputs.

What the compile action and the selector lookup call: connect, take the snapshot, convert it,
add the inventory's own policies and workloads. Every problem is returned as an error string
(nothing raised), so the caller reports them together with the inventory's and stops before
any host changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.netpol.fleet.plugins.module_utils.engine.errors import InputErrors
from ansible_collections.netpol.fleet.plugins.module_utils.engine.fleet import ANTISPOOF_MODES
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import Fleet, Policy
from ansible_collections.netpol.fleet.plugins.module_utils.engine.selectors import parse_selector
from ansible_collections.netpol.fleet.plugins.module_utils.engine.validate import dns1123_label
from ansible_collections.netpol.fleet.plugins.plugin_utils.kubernetes.auth import AUTH_OPTIONS, AuthError, connect
from ansible_collections.netpol.fleet.plugins.plugin_utils.kubernetes.convert import ClusterInputs, cluster_inputs, vmi_hosts
from ansible_collections.netpol.fleet.plugins.plugin_utils.kubernetes.snapshot import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_TIMEOUT,
    EVERY_POLICY,
    NAMESPACES,
    NODES,
    VMIS,
    PolicyScope,
    Snapshot,
    SnapshotError,
    client_page_reader,
    take_snapshot,
)

# The options of netpol_kubernetes / the lookup: kubernetes.core's auth options plus the lists'.
SCOPE_OPTIONS = ("policy_namespaces", "policy_label_selectors")
OPTIONS = tuple(AUTH_OPTIONS) + ("page_size", "timeout") + SCOPE_OPTIONS + ("vmi_antispoof",)


@dataclass
class ClusterRead:
    """The merged inputs, and what to tell the user about the snapshot."""

    inputs: ClusterInputs = field(default_factory=ClusterInputs)
    source: str = ""
    host: str = ""
    resource_versions: Mapping[str, str] = field(default_factory=dict)
    pages: Mapping[str, int] = field(default_factory=dict)
    policy_scope: PolicyScope = EVERY_POLICY

    @property
    def compiled_from(self) -> str:
        """The snapshot in one line: the API host and each list's resourceVersion, for diff headers."""
        versions = ", ".join("%s %s" % item for item in self.resource_versions.items())
        return "the Kubernetes snapshot of %s at resourceVersions %s" % (self.host, versions)

    @property
    def report(self) -> Dict[str, Any]:
        return {"credentials": self.source, "host": self.host, "resource_versions": dict(self.resource_versions),
                "pages": dict(self.pages), "policy_namespaces": list(self.policy_scope.namespaces),
                "policy_label_selector": self.policy_scope.label_selector}


def unknown_options(options: Mapping[str, Any]) -> List[str]:
    return ["netpol_kubernetes: unknown option %r: known options are %s" % (name, ", ".join(OPTIONS))
            for name in sorted(options) if name not in OPTIONS]


def read_cluster(options: Mapping[str, Any], hostvars: Mapping[str, Mapping[str, Any]], inventory: Fleet,
                 inventory_policies: Sequence[Policy], declared_namespaces: Iterable[str] = (),
                 environ: Optional[Mapping[str, str]] = None, find_ports: bool = True) -> ClusterRead:
    """The cluster's snapshot merged with the inventory; read.inputs.errors lists every problem."""
    read = ClusterRead()
    read.inputs.errors.extend(unknown_options(options))
    scope, scope_errors = policy_scope(options)
    read.inputs.errors.extend(scope_errors)
    antispoof = str(options.get("vmi_antispoof") or "full")
    if antispoof not in ANTISPOOF_MODES:
        read.inputs.errors.append("netpol_kubernetes.vmi_antispoof: %r is not one of %s"
                                  % (antispoof, ", ".join(ANTISPOOF_MODES)))
    if read.inputs.errors:
        return read
    try:
        connection = connect(options, environ)
        read.source, read.host = connection.source, connection.host
        snapshot = take_snapshot(client_page_reader(connection.client), _int(options, "page_size", DEFAULT_PAGE_SIZE),
                                 _int(options, "timeout", DEFAULT_TIMEOUT), policy_scope=scope)
    except (AuthError, SnapshotError, ValueError) as failure:
        read.inputs.errors.append("netpol_source=kubernetes: %s" % failure)
        return read
    read.resource_versions, read.pages, read.policy_scope = snapshot.resource_versions, snapshot.pages, scope
    read.inputs = merged(snapshot, inventory, hostvars, inventory_policies, declared_namespaces, antispoof,
                         find_ports)
    read.inputs.errors.extend(missing_namespaces(scope, snapshot))
    if not scope.everything:
        read.inputs.warnings.append(scope_warning(scope))
    return read


def read_vmi_hosts(options: Mapping[str, Any], hostvars: Mapping[str, Mapping[str, Any]], inventory: Fleet,
                   environ: Optional[Mapping[str, str]] = None) -> Tuple[List[str], List[str]]:
    """(the inventory hosts the cluster's VMIs run on now, errors): only Nodes and VMIs are listed. What the
    enforce role reads bridge forwarding databases on before compiling; the compile's own snapshot, taken
    after, finds each VMI's port there (a VMI that came to another host meanwhile stops the run)."""
    errors = unknown_options(options)
    if errors:
        return [], errors
    try:
        connection = connect(options, environ)
        snapshot = take_snapshot(client_page_reader(connection.client), _int(options, "page_size", DEFAULT_PAGE_SIZE),
                                 _int(options, "timeout", DEFAULT_TIMEOUT), resources=(NODES, VMIS))
    except (AuthError, SnapshotError, ValueError) as failure:
        return [], ["netpol_source=kubernetes: %s" % failure]
    return vmi_hosts(snapshot, inventory, hostvars), []


def policy_scope(options: Mapping[str, Any]) -> Tuple[PolicyScope, List[str]]:
    """policy_namespaces and policy_label_selectors (ANDed, as kubernetes.core's label_selectors), checked."""
    errors: List[str] = []
    namespaces = _strings(options, "policy_namespaces", errors)
    for index, namespace in enumerate(namespaces):
        reasons = dns1123_label(namespace)
        if reasons:
            errors.append("netpol_kubernetes.policy_namespaces[%d]: invalid namespace name %r: %s"
                          % (index, namespace, "; ".join(reasons)))
        elif namespace in namespaces[:index]:
            errors.append("netpol_kubernetes.policy_namespaces[%d]: namespace %r is listed twice" % (index, namespace))
    selectors = _strings(options, "policy_label_selectors", errors)
    for index, selector in enumerate(selectors):
        try:
            parse_selector(selector, "netpol_kubernetes.policy_label_selectors[%d]" % index)
        except InputErrors as bad:
            errors.extend(str(e) for e in bad.errors)
    return PolicyScope(tuple(namespaces), ",".join(s.strip() for s in selectors if s.strip())), errors


def _strings(options: Mapping[str, Any], name: str, errors: List[str]) -> List[str]:
    value = options.get(name)
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        errors.append("netpol_kubernetes.%s must be a list of strings, not %r" % (name, value))
        return []
    return list(value)


def missing_namespaces(scope: PolicyScope, snapshot: Snapshot) -> List[str]:
    """A namespace named for policies that the cluster does not have: a typo would read no policy there."""
    present = {str((item.get("metadata") or {}).get("name")) for item in snapshot.of(NAMESPACES)}
    return ["netpol_kubernetes.policy_namespaces[%d]: namespace %r is not a Namespace of the cluster"
            % (index, namespace) for index, namespace in enumerate(scope.namespaces) if namespace not in present]


def scope_warning(scope: PolicyScope) -> str:
    return ("netpol_kubernetes: NetworkPolicies are read only from %s (policy_namespaces, policy_label_selectors): "
            "the cluster's other NetworkPolicies are NOT enforced by this run, and workloads only they select stay "
            "unisolated here" % scope.describe())


def merged(snapshot: Snapshot, inventory: Fleet, hostvars: Mapping[str, Mapping[str, Any]],
           inventory_policies: Sequence[Policy], declared_namespaces: Iterable[str],
           vmi_antispoof: str = "full", find_ports: bool = True) -> ClusterInputs:
    """Cluster inputs plus the inventory's policies; one name in both places is an error."""
    found = cluster_inputs(snapshot, inventory, hostvars, declared_namespaces, vmi_antispoof, find_ports)
    cluster = {p.key: p for p in found.policies}
    for policy in inventory_policies:
        if policy.key in cluster:
            found.errors.append("%s: %s: metadata.name: duplicate NetworkPolicy name in namespace %r: also the "
                                "cluster's %s" % (policy.origin, policy.key, policy.namespace, cluster[policy.key].origin))
    found.policies = tuple(sorted(found.policies + tuple(p for p in inventory_policies if p.key not in cluster),
                                  key=lambda p: (p.namespace, p.name)))
    return found


def _int(options: Mapping[str, Any], name: str, default: int) -> int:
    value = options.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError("netpol_kubernetes.%s must be an integer, not %r" % (name, value)) from None
