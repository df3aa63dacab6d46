# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: selector
author: netpol.fleet contributors (@netpol)
version_added: "0.1.0"
short_description: Workloads of the fleet (inventory, or inventory and cluster) that a NetworkPolicy selector selects
description:
  - Resolves a pod selector, as a NetworkPolicy would, against the fleet described by the inventory
    (C(netpol_namespace), C(netpol_labels), C(netpol_addresses), C(netpol_ports) per host, and
    C(netpol_workloads) on hypervisors) and C(netpol_namespaces).
  - With O(source=kubernetes) the fleet is the one the enforce role compiles with C(netpol_source=kubernetes) -
    the inventory's workloads plus the Pods and VirtualMachineInstances of one snapshot of the cluster,
    with the cluster's Namespaces (docs/kubernetes.md). Each call takes its own snapshot.
  - Each term is one selector, in the kubectl string form, for example C(app=web,!legacy) or
    "tier in (a,b)", or as a dict with C(matchLabels) and C(matchExpressions). An empty string or dict
    selects every workload.
  - Without O(namespace) and O(namespace_selector) every namespace counts; with both, a workload must
    satisfy both.
  - The inventory is checked as the enforce role checks it; any invalid input fails the lookup with
    every problem listed.
options:
  _terms:
    description: Pod selectors; the results of all terms are returned in order, one list.
    required: true
    type: list
    elements: raw
  namespace:
    description: Only workloads of this namespace.
    type: str
  namespace_selector:
    description:
      - Only workloads whose namespace's labels match this selector (string or dict form).
      - Every namespace carries the label C(kubernetes.io/metadata.name) with its own name.
    type: raw
  namespaces:
    description: The namespaces and their labels, as in C(netpol_namespaces).
    type: dict
    vars:
      - name: netpol_namespaces
  source:
    description: C(inventory), or C(kubernetes) to add a live cluster's workloads and namespaces.
    type: str
    choices: [inventory, kubernetes]
    default: inventory
    vars:
      - name: netpol_source
  kubernetes:
    description:
      - Connection and list options for O(source=kubernetes), as for the enforce role's C(netpol_kubernetes) -
        kubernetes.core's C(kubeconfig), C(context), C(host), C(api_key), C(username), C(password),
        C(client_cert), C(client_key), C(ca_cert), C(validate_certs), C(proxy), C(impersonate_user),
        C(impersonate_groups), each falling back to its K8S_AUTH_* variable, and C(page_size), C(timeout).
      - C(policy_namespaces) and C(policy_label_selectors) are checked as for the enforce role (a namespace the
        cluster does not have is an error) and change nothing here - the lookup returns workloads, never policies.
    type: dict
    default: {}
    vars:
      - name: netpol_kubernetes
notes:
  - The fleet is read from C(hostvars), so hosts whose addresses come from facts need their facts gathered.
seealso:
  - name: Kubernetes NetworkPolicy
    description: The semantics of pod and namespace selectors.
    link: https://kubernetes.io/docs/concepts/services-networking/network-policies/
"""

EXAMPLES = r"""
- name: Addresses of the web tier in the shop namespace
  ansible.builtin.debug:
    msg: "{{ query('netpol.fleet.selector', 'app=web', namespace='shop') | map(attribute='addresses') | flatten }}"

- name: Every database of the payments team's namespaces
  ansible.builtin.debug:
    msg: "{{ query('netpol.fleet.selector', 'role in (db,cache)', namespace_selector='team=payments') }}"

- name: Every pod and VM of the cluster labelled app=web, with the node each runs on
  ansible.builtin.debug:
    msg: "{{ query('netpol.fleet.selector', 'app=web', source='kubernetes',
                   kubernetes={'kubeconfig': '~/.kube/config', 'context': 'prod'})
             | map(attribute='node') | list }}"

- name: The same selector in the manifest form
  ansible.builtin.debug:
    msg: "{{ query('netpol.fleet.selector', {'matchExpressions': [{'key': 'role', 'operator': 'In', 'values': ['db']}]}) }}"
"""

RETURN = r"""
_raw:
  description: The matching workloads, sorted by namespace and name.
  type: list
  elements: dict
  contains:
    kind:
      description: C(host) (an inventory host in host mode), C(vm) (an inventory VM in bridge mode), C(Pod) or
        C(VirtualMachineInstance) (from the cluster).
      type: str
    node:
      description: Where the workload runs - the inventory host for C(host) and C(vm), the Node name for cluster
        objects (empty for a pod not yet scheduled).
      type: str
    name:
      description: The workload's name (the inventory host, or the VM name in bridge mode).
      type: str
    namespace:
      description: The workload's namespace.
      type: str
    host:
      description: The inventory host that enforces for the workload (itself in host mode, the hypervisor in bridge
        mode); null for a cluster object no inventory host enforces for (a peer only).
      type: str
    labels:
      description: The workload's labels.
      type: dict
    addresses:
      description: The workload's IPv4 and IPv6 addresses, normalised.
      type: list
      elements: str
    ports:
      description: Named ports, each with C(name), C(port) and C(protocol).
      type: list
      elements: dict
"""

from typing import Any, Dict, List, Mapping, Tuple

from ansible.errors import AnsibleError, AnsibleLookupError
from ansible.plugins.lookup import LookupBase
from ansible.utils.display import Display

from ansible_collections.netpol.fleet.plugins.module_utils.engine.errors import InputErrors
from ansible_collections.netpol.fleet.plugins.module_utils.engine.fleet import load_fleet
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import Fleet, LabelSelector, Workload
from ansible_collections.netpol.fleet.plugins.module_utils.engine.selectors import (
    parse_selector,
    select_workloads,
    selector_from_dict,
)
from ansible_collections.netpol.fleet.plugins.plugin_utils.kubernetes.convert import Origin, is_peer_only
from ansible_collections.netpol.fleet.plugins.plugin_utils.kubernetes.source import read_cluster

display = Display()


def read_selector(value: Any, what: str) -> LabelSelector:
    """A selector in string or dict form."""
    if isinstance(value, Mapping):
        return selector_from_dict(value, what)
    if isinstance(value, str):
        return parse_selector(value, what)
    raise AnsibleLookupError("%s must be a selector string or dict, not %s" % (what, type(value).__name__))


def as_dict(workload: Workload, origin: Origin) -> Dict[str, Any]:
    return {
        "kind": origin.kind,
        "node": origin.node,
        "name": workload.name,
        "namespace": workload.namespace,
        "host": None if is_peer_only(workload) else workload.host,
        "labels": dict(workload.labels),
        "addresses": list(workload.addresses),
        "ports": [{"name": p.name, "port": p.port, "protocol": p.protocol} for p in workload.ports],
    }


class LookupModule(LookupBase):
    def run(self, terms: List[Any], variables: Any = None, **kwargs: Any) -> List[Dict[str, Any]]:
        self.set_options(var_options=variables, direct=kwargs)
        hostvars = (variables or {}).get("hostvars") or {}
        namespace = self.get_option("namespace")
        try:
            fleet, origins = self._fleet({host: hostvars[host] for host in hostvars})
            namespace_selector = self.get_option("namespace_selector")
            if namespace_selector is not None:
                namespace_selector = read_selector(namespace_selector, "namespace_selector")
            found = []
            for i, term in enumerate(terms):
                pod_selector = read_selector(term, "selector %d" % i)
                found.extend(select_workloads(fleet, pod_selector, namespace, namespace_selector))
        except InputErrors as errors:
            raise AnsibleError("netpol.fleet.selector: invalid input:\n%s" % errors) from None
        return [as_dict(w, origins.get(w) or inventory_origin(w)) for w in found]

    def _fleet(self, hostvars: Mapping[str, Any]) -> Tuple[Fleet, Mapping[Workload, Origin]]:
        """The inventory's fleet, merged with one snapshot of the cluster for source=kubernetes."""
        declared = self.get_option("namespaces") or {}
        fleet = load_fleet(hostvars, declared)
        if self.get_option("source") != "kubernetes":
            return fleet, {}
        # No bridge port is needed to answer: VMIs of inventory hypervisors are returned with their host.
        cluster = read_cluster(self.get_option("kubernetes") or {}, hostvars, fleet, (), declared, find_ports=False)
        if cluster.inputs.errors:
            raise AnsibleError("netpol.fleet.selector: invalid input:\n%s" % "\n".join(cluster.inputs.errors))
        for warning in cluster.inputs.warnings:
            display.warning("netpol.fleet.selector: %s" % warning)
        return cluster.inputs.fleet, cluster.inputs.origins


def inventory_origin(workload: Workload) -> Origin:
    return Origin("vm" if workload.interface else "host", workload.enforcer)
