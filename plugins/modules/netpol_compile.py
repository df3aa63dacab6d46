#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: netpol_compile
short_description: Compile the fleet's NetworkPolicies once, on the controller
version_added: 0.1.0
description:
  - Action plugin run once per play (with C(run_once)) on the controller. It reads the netpol variables of
    B(every) inventory host from C(hostvars), not only of the play's hosts, so a C(--limit) or C(serial) run
    still resolves peers against the whole fleet.
  - It validates all input (manifests, inventory variables, privileged rules) and fails with every error, each
    naming file, object and field, before any host is touched.
  - Every variable with the C(netpol_) prefix, of the running host and of every inventory host, must be one the
    collection knows (an option of one of its roles, a per-host inventory variable, or one it sets itself); an
    unknown one fails the run, naming where it was set and the closest known name.
  - It builds the privileged static rules (SSH from the controller and management CIDRs, kube-apiserver,
    etcd, kubelet, DNS, DHCP, ICMPv6 neighbour discovery), warns when the controller would be left
    without an SSH path, and compiles every requested host's desired kernel state once.
  - The result maps each host to its state (sets, then tables of chains and jumps), ready for
    M(netpol.fleet.ipset) and M(netpol.fleet.netpol_chain). It never changes anything itself.
author:
  - netpol.fleet contributors (@netpol)
options:
  policies:
    description:
      - NetworkPolicy manifests as dicts, or YAML texts of one or more documents.
      - When not given, the running host's C(netpol_policies), read by the action itself; as it is when it holds
        no template (Ansible does not template a thousand manifests as a task argument first).
    type: list
    elements: raw
    default: []
  policy_paths:
    description:
      - Files, globs or directories of multi-document YAML manifests (C(netpol_policy_paths)).
      - Relative paths are resolved against O(base_dir).
    type: list
    elements: str
    default: []
  namespaces:
    description:
      - Namespace name to C({labels}); C(kubernetes.io/metadata.name) is added.
      - When not given, the running host's C(netpol_namespaces), read as O(policies) is.
    type: dict
    default: {}
  base_dir:
    description:
      - Directory relative policy paths start from.
      - Defaults to the directory of the inventory that defines the first host (C(inventory_dir)), or the
        current directory when that host has none (an inventory given as C(-i host1,host2,)).
      - Not the playbook's directory, which is inside the installed collection when a playbook is run by
        its FQCN (C(ansible-playbook netpol.fleet.site)).
    type: path
  source:
    description:
      - C(inventory) reads workloads, namespaces and policies from inventory variables and policy files only.
      - C(kubernetes) also takes one snapshot of a live cluster (Namespaces, NetworkPolicies, Pods, Nodes,
        KubeVirt VirtualMachineInstances), on the controller, and merges it with the inventory's; see
        docs/kubernetes.md for how cluster objects map to inventory hosts.
    type: str
    choices: [inventory, kubernetes]
    default: inventory
  kubernetes:
    description:
      - Connection and list options for O(source=kubernetes) (C(netpol_kubernetes)).
      - The connection options of kubernetes.core, with the same K8S_AUTH_* environment fallbacks -
        C(kubeconfig), C(context), C(host), C(api_key), C(username), C(password), C(client_cert), C(client_key),
        C(ca_cert), C(validate_certs), C(proxy), C(impersonate_user), C(impersonate_groups) - and C(page_size)
        (objects per list request, default 500) and C(timeout) (seconds per request, default 30).
      - C(policy_namespaces) (a list of namespaces) and C(policy_label_selectors) (a list of label selectors,
        ANDed) restrict which NetworkPolicies are read; Namespaces, Pods, Nodes and VMIs are always read
        cluster-wide. NetworkPolicies outside them are not enforced, and the run warns so.
      - C(vmi_antispoof) (C(full), C(mac_only) or C(off); default C(full)) is the anti-spoofing of the bridge
        ports of KubeVirt VMIs, found by MAC in their hypervisor's bridge forwarding database.
    type: dict
    default: {}
  hosts:
    description:
      - Hosts to return a state for. Defaults to the current batch (C(ansible_play_batch)).
      - Peers are always resolved against every inventory host.
    type: list
    elements: str
  controller_addresses:
    description:
      - Addresses the controller manages hosts from. Empty means detect them, from C(SSH_CLIENT) in the
        hosts' gathered C(ansible_env), or over the connection when it is SSH.
    type: list
    elements: str
    default: []
  control_plane_group:
    description: Inventory group of the Kubernetes control-plane hosts (kube-apiserver, etcd, kubelet rules).
    type: str
    default: control_plane
  privileged_defaults:
    description: Keep the default privileged rules. C(false) leaves only O(privileged_rules).
    type: bool
    default: true
  privileged_rules:
    description:
      - Extra privileged rules; one with the name of a default replaces it.
      - Each has C(name), C(direction) (C(ingress) or C(egress)), C(protocol) (C(TCP) default, C(UDP), C(SCTP),
        C(ICMPV6), C(ALL)), C(ports) (a port, C("first-last") or C([first, last]); omitted = all), C(cidrs)
        (omitted = any address) and C(icmpv6_types).
    type: list
    elements: raw
    default: []
  privileged_exclude:
    description: Names of default privileged rules to drop (see the role's documentation for the names).
    type: list
    elements: str
    default: []
  privileged_dhcp:
    description: Keep the DHCP and DHCPv6 client rules.
    type: bool
    default: true
  management_cidrs:
    description: Networks that keep SSH to every host, besides the controller.
    type: list
    elements: str
    default: []
  admin_cidrs:
    description: Networks that keep kube-apiserver (TCP 6443), besides the nodes.
    type: list
    elements: str
    default: []
  dns_resolvers:
    description: Resolvers hosts keep DNS (UDP and TCP 53) to. Empty means any address.
    type: list
    elements: str
    default: []
  ssh_port:
    description: The SSH port the management rule keeps open.
    type: int
    default: 22
  enforce_jump_position:
    description:
      - Every jump into the collection's chains gets C(enforce_position) (see M(netpol.fleet.netpol_chain)) - moved
        back to position 1 on every run instead of left below a foreign rule inserted above it since.
    type: bool
    default: false
  log:
    description: NFLOG denied packets with this group and rate limit; omit to log nothing.
    type: dict
    suboptions:
      group:
        description: NFLOG group.
        type: int
        default: 100
      limit:
        description: Rate, as C(-m limit --limit) takes it.
        type: str
        default: 10/min
      burst:
        description: Burst, as C(--limit-burst) takes it.
        type: int
        default: 5
  rollback:
    description:
      - The enforce role's rollback variables, only checked here (before any host changes) so a bad value
        names its variable instead of failing on a host.
    type: dict
    suboptions:
      timeout:
        description: C(netpol_rollback_timeout), 0-86400 seconds.
        type: raw
      confirm_timeout:
        description: C(netpol_rollback_confirm_timeout), 0-86400 seconds (checked when the timeout is not 0).
        type: raw
      dir:
        description: C(netpol_rollback_dir), an absolute path.
        type: raw
  allow_no_policies:
    description:
      - Compile even when no NetworkPolicy is found in any source. By default such a run fails, because it would
        leave every workload unisolated.
    type: bool
    default: false
  default_deny:
    description:
      - Add a deny-all (Ingress and Egress) in every namespace with workloads (C(netpol_default_deny)), so a
        workload no policy selects is isolated. Policies are additive, so what any policy allows stays allowed.
    type: bool
    default: false
  bridge_drop_unmanaged:
    description:
      - Bridge mode (C(netpol_bridge_drop_unmanaged)); C(true) or C(false), checked here so a bad value names the
        variable. C(true) drops packets of the ports of bridges with VMs that are neither VMs of
        C(netpol_workloads) nor uplinks of the hypervisor's C(netpol_bridge_uplinks).
    type: raw
    default: false
  expected:
    description: Also return the simulator's expected reachability matrix (flow records) in RV(expected).
    type: bool
    default: false
  probe_ports:
    description: Ports (C({port, protocol})) the expected matrix covers, when O(expected) is set.
    type: list
    elements: dict
  explain:
    description:
      - Also explain one flow in RV(explained), from exactly the inputs the hosts are compiled from
        (the C(netpol.fleet.explain) role and C(playbooks/explain.yml) use it).
    type: dict
    suboptions:
      src:
        description: The source, an inventory host or workload (C(name) or C(namespace/name)), or an IP address.
        type: str
        required: true
      dst:
        description: The destination, in the same forms as O(explain.src).
        type: str
        required: true
      port:
        description: The destination port, 1-65535.
        type: raw
        required: true
      protocol:
        description: V(TCP), V(UDP) or V(SCTP) (any case).
        type: str
        default: TCP
  set_store:
    description:
      - The controller directory where each distinct set's content is written once, in C(ipset save) form, as
        C(DIGEST.ipset) (DIGEST the first 32 hex digits of the SHA-256 of that text). A file that exists is
        not written again.
      - Default a C(netpol-sets) directory in ansible-playbook's own temporary directory (removed when it
        exits), so each set exists once per play on the controller.
    type: path
  stage:
    description:
      - V(compile) compiles every host's state (everything this page describes).
      - V(bridge_query) only lists the hosts of O(hosts) whose bridges the compile reads, in RV(bridge_query), and
        contacts no host. They are the hypervisors of the inventory (C(netpol_workloads)) and, with O(source=kubernetes),
        the hosts the cluster's KubeVirt VMIs run on now (only Nodes and VMIs are listed). The enforce role runs
        M(netpol.fleet.netpol_bridge) O(netpol.fleet.netpol_bridge#module:state=query) once for the batch,
        delegated to each of them in a loop, and passes the results back as O(bridge_facts).
    type: str
    choices: [compile, bridge_query]
    default: compile
  bridge_facts:
    description:
      - The results of the bridge query loop (the registered C(results)), each with C(item.host), the host it
        read. A hypervisor's VM ports are checked against them and a VMI's port is found by its MAC in them; a
        VMI on a host without one stops the run.
    type: list
    elements: raw
    default: []
  variables_read:
    description:
      - The token of the variables a O(stage=bridge_query) run read (its RV(variables_read)). The compile takes
        that reading of every inventory host's variables instead of reading them again (Ansible computes a
        host's variables anew on each read, the bulk of a big inventory's compile step).
      - A reading is taken once (it is removed as it is read) and only for the same batch (O(hosts)) and the
        same inventory hosts; otherwise, and without this option, the compile reads the variables itself.
        Kept in ansible-playbook's own temporary directory, removed when it exits.
    type: str
attributes:
  check_mode:
    support: full
    description: Pure computation; runs the same in check mode.
  diff_mode:
    support: none
    description: It changes nothing; the modules that apply its result show the diff.
  platform:
    support: full
    platforms: posix
    description: Runs on the controller only.
notes:
  - Run it with C(run_once) and register the result; each host applies C(result.hosts[inventory_hostname]).
  - Hosts outside a C(--limit) without C(netpol_addresses) need cached facts to be resolved.
  - A C(--limit) run warns when hosts outside it select workloads of the run by address (their sets are not
    updated by this run).
seealso:
  - module: netpol.fleet.netpol_host
  - module: netpol.fleet.ipset
  - module: netpol.fleet.netpol_chain
"""

EXAMPLES = r"""
- name: Compile once for the whole fleet
  netpol.fleet.netpol_compile:
    policies: "{{ netpol_policies }}"
    policy_paths: "{{ netpol_policy_paths }}"
    namespaces: "{{ netpol_namespaces }}"
    management_cidrs: [10.10.0.0/24]
    log: {group: 5, limit: 20/min, burst: 10}
  run_once: true
  register: netpol_compiled

- name: Apply each host's state as one transaction; its sets travel from the store as one file
  netpol.fleet.netpol_host:
    tables: "{{ netpol_compiled.hosts[inventory_hostname].tables }}"
    sets: "{{ netpol_compiled.hosts[inventory_hostname].sets }}"
    set_store: "{{ netpol_compiled.set_store }}"
"""

RETURN = r"""
hosts:
  description:
    - Host name to its desired state, of a size in the order of its own rules plus the names of its sets.
    - C(host), the host name.
    - C(sets), set name to the digest of the set's content in RV(set_store), for every set the host's
      rules use. No members are in it; a set that many hosts use is written once, in RV(set_store).
    - C(tables), a list of C({family, name, chains, jumps}) with an entry for the IPv4 and IPv6 filter
      tables at least, as M(netpol.fleet.netpol_host) takes them.
  returned: success
  type: dict
  sample:
    web1:
      host: web1
      sets: {"netpol4-2b1c0e9d4a": "8d5e0c1f9a7b3e2d4c6b8a0f1e3d5c7b"}
      tables:
        - family: ipv4
          name: filter
          chains: [{"name": "NETPOL-INGRESS", "rules": ["-j NETPOL-PRIV-IN"]}]
          jumps: [{"chain": "INPUT", "target": "NETPOL-INGRESS", "match": "", "position": 1}]
set_store:
  description:
    - The controller directory holding each distinct set once as C(DIGEST.ipset) in C(ipset save) form
      (O(set_store), or its default). M(netpol.fleet.netpol_host) reads the sets of a host from it.
  returned: success
  type: str
summary:
  description: Host name to counts of sets, chains and rules.
  returned: success
  type: dict
  sample: {"web1": {"sets": 3, "chains": 4, "rules": 17}}
privileged:
  description: The privileged rules compiled in, after merging defaults and user rules.
  returned: success
  type: list
  elements: dict
controller_addresses:
  description: The controller addresses used for the management rule (given or detected).
  returned: success
  type: list
  elements: str
kubernetes:
  description: The snapshot taken with O(source=kubernetes) - the API host, where the credentials came from,
    each list's C(resourceVersion) and number of pages (a namespace's NetworkPolicy list as
    C(NetworkPolicy in <namespace>)), and the C(policy_namespaces) and C(policy_label_selector) read.
  returned: when O(source=kubernetes)
  type: dict
  sample: {"host": "https://127.0.0.1:6443", "credentials": "kubeconfig /root/.kube/config",
           "resource_versions": {"Namespace": "81234", "Pod": "81250"}, "pages": {"Namespace": 1, "Pod": 2},
           "policy_namespaces": [], "policy_label_selector": ""}
compiled_from:
  description: The snapshot the states were compiled from, in one line (API host, each list's C(resourceVersion)),
    which the enforce role shows at the head of each host's diff (the C(compiled_from) option of M(netpol.fleet.netpol_host)).
  returned: when O(source=kubernetes)
  type: str
  sample: "the Kubernetes snapshot of https://127.0.0.1:6443 at resourceVersions Namespace 81234, NetworkPolicy 81240"
expected:
  description:
    - Expected flow records C({src, dst, address, family, protocol, port, reachable}), each with C(why),
      the simulator's reason per side (egress at the source, ingress at the destination) as two lines.
  returned: when O(expected) is set
  type: list
  elements: dict
explained:
  description:
    - One record per address family both ends of O(explain) have C({src, dst, src_address, address, family,
      protocol, port, reachable, egress, ingress}).
    - Each side is C({direction, allowed, reason, host, workload, isolated_by, decided_by, kernel}); C(decided_by)
      names the policy rules (C(namespace/name ingress[i])) or privileged rules that allow it, or the drop of
      the isolated workload; C(kernel) lists the comments of the compiled rules that decide it (empty when no
      rule of the collection decides, the workload being not isolated; null when no host of the fleet
      enforces that side).
  returned: when O(explain) is set
  type: list
  elements: dict
  sample:
    - {src: lab-web1, dst: lab-db, src_address: 10.42.0.11, address: 10.42.0.22, family: 4, protocol: tcp,
       port: 5432, reachable: false,
       egress: {direction: egress, allowed: true, reason: not isolated for egress, host: lab-web1,
                workload: shop/lab-web1, isolated_by: [], decided_by: [], kernel: []},
       ingress: {direction: ingress, allowed: false, host: lab-db, workload: billing/lab-db,
                 reason: "isolated for ingress by billing/allow-monitoring, ...; no rule matched",
                 isolated_by: [billing/allow-monitoring], decided_by: [billing/lab-db isolated for ingress],
                 kernel: [billing/lab-db isolated for ingress]}}
bridge_query:
  description:
    - With O(stage=bridge_query), the hosts to read, in batch order, each with the options of its query -
      C(host), C(ports) (its VMs' ports and uplinks) and C(fdb) (read the forwarding database, with
      O(source=kubernetes)). Empty for a fleet without hypervisors or VMIs.
  returned: when O(stage=bridge_query)
  type: list
  elements: dict
  sample: [{"host": "hv1", "ports": ["vnet0", "bond0"], "fdb": false}]
variables_read:
  description:
    - With O(stage=bridge_query), the token of its reading of every inventory host's variables, for the
      compile's O(variables_read).
  returned: when O(stage=bridge_query)
  type: str
  sample: 0b1c9a3e5f6d4c2b8a7e9f0d1c2b3a4e
errors:
  description: Every input error, each naming file, object and field.
  returned: failure
  type: list
  elements: str
"""
