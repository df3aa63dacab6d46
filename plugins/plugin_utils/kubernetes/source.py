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
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import Fleet, Policy
from ansible_collections.netpol.fleet.plugins.plugin_utils.kubernetes.auth import AUTH_OPTIONS, AuthError, connect
from ansible_collections.netpol.fleet.plugins.plugin_utils.kubernetes.convert import ClusterInputs, cluster_inputs
from ansible_collections.netpol.fleet.plugins.plugin_utils.kubernetes.snapshot import (
    DEFAULT_PAGE_SIZE,
    DEFAULT_TIMEOUT,
    Snapshot,
    SnapshotError,
    client_page_reader,
    take_snapshot,
)

# The options of netpol_kubernetes / the lookup: kubernetes.core's auth options plus the lists'.
OPTIONS = tuple(AUTH_OPTIONS) + ("page_size", "timeout")


@dataclass
class ClusterRead:
    """The merged inputs, and what to tell the user about the snapshot."""

    inputs: ClusterInputs = field(default_factory=ClusterInputs)
    source: str = ""
    host: str = ""
    resource_versions: Mapping[str, str] = field(default_factory=dict)
    pages: Mapping[str, int] = field(default_factory=dict)

    @property
    def report(self) -> Dict[str, Any]:
        return {"credentials": self.source, "host": self.host, "resource_versions": dict(self.resource_versions),
                "pages": dict(self.pages)}


def unknown_options(options: Mapping[str, Any]) -> List[str]:
    return ["netpol_kubernetes: unknown option %r: known options are %s" % (name, ", ".join(OPTIONS))
            for name in sorted(options) if name not in OPTIONS]


def read_cluster(options: Mapping[str, Any], hostvars: Mapping[str, Mapping[str, Any]], inventory: Fleet,
                 inventory_policies: Sequence[Policy], declared_namespaces: Iterable[str] = (),
                 environ: Optional[Mapping[str, str]] = None) -> ClusterRead:
    """The cluster's snapshot merged with the inventory; read.inputs.errors lists every problem."""
    read = ClusterRead()
    read.inputs.errors.extend(unknown_options(options))
    if read.inputs.errors:
        return read
    try:
        connection = connect(options, environ)
        read.source, read.host = connection.source, connection.host
        snapshot = take_snapshot(client_page_reader(connection.client), _int(options, "page_size", DEFAULT_PAGE_SIZE),
                                 _int(options, "timeout", DEFAULT_TIMEOUT))
    except (AuthError, SnapshotError, ValueError) as failure:
        read.inputs.errors.append("netpol_source=kubernetes: %s" % failure)
        return read
    read.resource_versions, read.pages = snapshot.resource_versions, snapshot.pages
    read.inputs = merged(snapshot, inventory, hostvars, inventory_policies, declared_namespaces)
    return read


def merged(snapshot: Snapshot, inventory: Fleet, hostvars: Mapping[str, Mapping[str, Any]],
           inventory_policies: Sequence[Policy], declared_namespaces: Iterable[str]) -> ClusterInputs:
    """Cluster inputs plus the inventory's policies; one name in both places is an error."""
    found = cluster_inputs(snapshot, inventory, hostvars, declared_namespaces)
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
