# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compile the whole fleet's policies once, on the controller (docs: modules/netpol_compile.py).

Reads every inventory host's variables from hostvars (all of the inventory, not only the
play's hosts, so a --limit run still resolves peers everywhere), validates everything,
and returns each host's desired HostState for the enforce role to apply.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import fields, is_dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible import constants as C
from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.validation import (
    check_type_bool,
    check_type_dict,
    check_type_int,
    check_type_list,
    check_type_str,
)
from ansible.plugins.action import ActionBase

try:  # ansible-core 2.19+ tags values with the file and line they were read from
    from ansible._internal._datatag._tags import Origin
except ImportError:  # pragma: no cover - older ansible-core: errors name no place
    Origin = None

from ansible_collections.netpol.fleet.plugins.module_utils.bridge.ports import (
    FACTS_VARIABLE,
    UPLINKS_VARIABLE,
    bridge_vlans,
    check_ports,
    check_uplinks,
    uplink_ports,
)
from ansible_collections.netpol.fleet.plugins.module_utils.engine import settings
from ansible_collections.netpol.fleet.plugins.module_utils.engine.compile import compile_fleet, limit_text
from ansible_collections.netpol.fleet.plugins.module_utils.engine.errors import InputErrors
from ansible_collections.netpol.fleet.plugins.module_utils.engine.fleet import (
    default_deny_policies,
    load_fleet,
    unknown_namespace_errors,
)
from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import HostState, IpSet
from ansible_collections.netpol.fleet.plugins.module_utils.ipset.text import render_restore
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import CompileOptions, Fleet, LogOptions, Policy
from ansible_collections.netpol.fleet.plugins.module_utils.engine.parse import load_policies
from ansible_collections.netpol.fleet.plugins.module_utils.engine.privileged import (
    PrivilegedError,
    host_bits_warnings,
    lockout_warnings,
    rule_to_dict,
    rules_from_vars,
)
from ansible_collections.netpol.fleet.plugins.module_utils.verify.explain import ExplainError, explain, explained_matrix
from ansible_collections.netpol.fleet.plugins.module_utils.verify.flows import address_family, bare_address, flow_targets
from ansible_collections.netpol.fleet.plugins.plugin_utils import inventory_read
from ansible_collections.netpol.fleet.plugins.plugin_utils.kubernetes.source import read_cluster, read_vmi_hosts

# Every (family, table) a host always gets a call for, so chains we owned there before are
# removed even when the new policy set compiles nothing into them.
BASE_TABLES = (("ipv4", "filter"), ("ipv6", "filter"))
# A host that declares netpol_workloads (even an empty list) may hold bridge-mode chains in raw and nat.
BRIDGE_TABLES = (("ipv4", "nat"), ("ipv4", "raw"), ("ipv6", "nat"), ("ipv6", "raw"))
# The per-host variables the fleet is made of (and its address fallbacks): only these are
# templated for each inventory host, so a big inventory costs hosts x 10 lookups, not more. A host's
# bridge query result is not one of them: it comes from the batch's one query task (bridge_facts).
HOST_VARIABLES = ("netpol_namespace", "netpol_labels", "netpol_addresses", "netpol_ports", "netpol_workloads",
                  "netpol_node_name", "ansible_all_ipv4_addresses", "ansible_all_ipv6_addresses", "ansible_host",
                  UPLINKS_VARIABLE)
# What of a netpol_bridge state=query result compile reads (bridge/ports.py, kubernetes/convert.py).
QUERY_FACTS = ("ports", "missing", "vlan_aware", "vlans", "br_netfilter", "fdb")
# The controller reaches these hosts without the network: no SSH path to keep.
LOCAL_CONNECTIONS = ("local", "ansible.builtin.local", "netpol.fleet.netns")
EMPTY_FLEET = Fleet(workloads=(), namespaces=())
SSH_CONNECTIONS = ("ssh", "paramiko", "paramiko_ssh", "ansible.builtin.ssh", "ansible.builtin.paramiko_ssh")

# Action option -> the role variable it comes from: privileged errors name what users wrote.
PRIVILEGED_OPTIONS = {
    "privileged_defaults": "netpol_privileged_defaults",
    "privileged_rules": "netpol_privileged_rules",
    "privileged_exclude": "netpol_privileged_exclude",
    "privileged_dhcp": "netpol_privileged_dhcp",
    "management_cidrs": "netpol_management_cidrs",
    "admin_cidrs": "netpol_admin_cidrs",
    "dns_resolvers": "netpol_dns_resolvers",
    "ssh_port": "netpol_ssh_port",
}
# Fleet-wide options: the compile runs once (run_once) with the running host's values. A host's own
# value (its host_vars, a group of only some hosts) would be silently ignored for it: it stops the run.
FLEET_WIDE_OPTIONS = dict(
    PRIVILEGED_OPTIONS,
    controller_addresses="netpol_controller_addresses",
    control_plane_group="netpol_control_plane_group",
    enforce_jump_position="netpol_enforce_jump_position",
    default_deny="netpol_default_deny",
    allow_no_policies="netpol_allow_no_policies",
    policies="netpol_policies",
    policy_paths="netpol_policy_paths",
    namespaces="netpol_namespaces",
    source="netpol_source",
)
# The collection root (roles/ beside plugins/): the roles' argument specs name the known variables.
COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CONTROL_PLANE_GROUP = "control_plane"

ARGUMENT_SPEC = {
    "policies": {"type": "list", "elements": "raw", "default": []},
    "policy_paths": {"type": "list", "elements": "str", "default": []},
    "namespaces": {"type": "dict", "default": {}},
    "base_dir": {"type": "path"},
    "source": {"type": "str", "choices": ["inventory", "kubernetes"], "default": "inventory"},
    "kubernetes": {"type": "dict", "default": {}},
    "hosts": {"type": "list", "elements": "str"},
    "controller_addresses": {"type": "list", "elements": "str", "default": []},
    "control_plane_group": {"type": "str", "default": "control_plane"},
    "privileged_defaults": {"type": "bool", "default": True},
    "privileged_rules": {"type": "list", "elements": "raw", "default": []},
    "privileged_exclude": {"type": "list", "elements": "str", "default": []},
    "privileged_dhcp": {"type": "bool", "default": True},
    "management_cidrs": {"type": "list", "elements": "str", "default": []},
    "admin_cidrs": {"type": "list", "elements": "str", "default": []},
    "dns_resolvers": {"type": "list", "elements": "str", "default": []},
    "ssh_port": {"type": "int", "default": 22},
    "enforce_jump_position": {"type": "bool", "default": False},
    "log": {"type": "dict", "options": {
        "group": {"type": "int", "default": 100},
        "limit": {"type": "str", "default": "10/min"},
        "burst": {"type": "int", "default": 5},
    }},
    "rollback": {"type": "dict", "options": {
        "timeout": {"type": "raw"},
        "confirm_timeout": {"type": "raw"},
        "dir": {"type": "raw"},
    }},
    "allow_no_policies": {"type": "bool", "default": False},
    "default_deny": {"type": "bool", "default": False},
    "bridge_drop_unmanaged": {"type": "raw", "default": False},  # checked by settings, naming the variable
    "expected": {"type": "bool", "default": False},
    "probe_ports": {"type": "list", "elements": "dict"},
    "explain": {"type": "dict", "options": {
        "src": {"type": "str", "required": True},
        "dst": {"type": "str", "required": True},
        "port": {"type": "raw", "required": True},
        "protocol": {"type": "str", "default": "TCP"},
    }},
    "set_store": {"type": "path"},
    "stage": {"type": "str", "choices": ["compile", "bridge_query"], "default": "compile"},
    "bridge_facts": {"type": "list", "elements": "raw", "default": []},
    "variables_read": {"type": "str"},
}
# Arguments that default to a variable of the running host, read by the action itself: as it is when it
# is plain data (no template in it). Given as task arguments ("{{ netpol_policies }}"), Ansible templates
# them first, a deep tagging copy: for 1,000 manifests a tenth of the compile step at 5,000 hosts.
FROM_VARIABLES = {"policies": "netpol_policies", "namespaces": "netpol_namespaces"}
# Arguments that, given as a list (a mapping), skip the validator's deep copy (ActionModule._validated_args).
BULK_ARGUMENTS = {"policies": list, "namespaces": dict, "bridge_facts": list}
# Each distinct set's content, once per play: the per-process temporary directory of ansible-playbook
# (removed when it exits; its workers share it).
SET_STORE = "netpol-sets"
SET_SUFFIX = ".ipset"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._validated_args(task_vars)
        if args["stage"] == "bridge_query":
            return self._bridge_query(result, args, task_vars)
        hosts = args["hosts"] or list(task_vars.get("ansible_play_batch") or task_vars.get("hostvars", {}))
        hostvars, origins, own_values = inventory_read.take(C.DEFAULT_LOCAL_TMP, args["variables_read"], hosts,
                                                            list(task_vars.get("hostvars", {}))) \
            or read_inventory(task_vars, hosts)
        with_bridge_facts(hostvars, args["bridge_facts"])
        base_dir = policy_base_dir(args["base_dir"], task_vars)
        controller = list(args["controller_addresses"]) or self._detected_controller(hostvars)
        errors = settings.unknown_variable_errors(origins, known_variables())
        errors += variable_value_errors(args, task_vars.get("groups", {}))
        errors += per_host_value_errors(args, own_values, task_vars.get("inventory_hostname", ""),
                                        play_wide_names(self._task))
        policies, fleet, warnings, input_errors = load_inputs(args, hostvars, base_dir)
        if args["source"] == "kubernetes":  # one snapshot, here on the controller, never per host
            cluster = read_cluster(args["kubernetes"], hostvars, fleet, policies, args["namespaces"])
            policies, fleet = cluster.inputs.policies, cluster.inputs.fleet
            warnings, input_errors = warnings + cluster.inputs.warnings, input_errors + cluster.inputs.errors
            result["kubernetes"] = cluster.report
            result["compiled_from"] = cluster.compiled_from  # heads each host's diff (netpol_host)
            self._display.display("netpol: Kubernetes snapshot of %s, credentials from %s, resourceVersions %s, "
                                  "pages %s, NetworkPolicies of %s" % (
                                      cluster.host, cluster.source, cluster.report["resource_versions"],
                                      cluster.report["pages"], cluster.policy_scope.describe()))
        if not input_errors:  # the fleet is complete only now (inventory, plus the cluster's)
            input_errors += [str(error) for error in unknown_namespace_errors(policies, fleet)]
        errors += input_errors
        bridge_errors, port_bridges = check_ports(fleet, hostvars) if not errors else ([], {})
        drop_unmanaged = settings.boolean(args["bridge_drop_unmanaged"])
        uplink_errors, uplinks = check_uplinks(hostvars, port_bridges, bool(drop_unmanaged)) if not errors else ([], {})
        errors += bridge_errors + uplink_errors
        if not (policies or input_errors or args["allow_no_policies"] or args["default_deny"] or args.get("explain")):
            errors.append(NO_POLICIES)  # explain only reads: a fleet without policies is a question it answers
        if args["default_deny"]:
            policies += default_deny_policies(fleet)
        control_plane = task_vars.get("groups", {}).get(args["control_plane_group"], [])
        variables = privileged_vars(args, controller, fleet, control_plane)
        try:
            privileged = rules_from_vars(variables)
        except PrivilegedError as e:
            errors += e.errors
        warnings += host_bits_warnings(variables)
        if errors:
            return failure(result, errors)
        options = CompileOptions(privileged=privileged, log=log_options(args["log"]),
                                 enforce_jump_position=args["enforce_jump_position"],
                                 bridge_drop_unmanaged=bool(drop_unmanaged))
        states = compile_fleet(fleet, policies, options, hosts=hosts, port_bridges=port_bridges, bridge_uplinks=uplinks,
                               bridge_vlans=bridge_vlans(hostvars, port_bridges))
        outside = sorted(set(hostvars) - set(task_vars.get("ansible_play_hosts_all") or hostvars))
        warnings += limited_run_warnings(fleet, policies, options, hosts, outside, port_bridges, uplinks)
        if self._connection.transport not in LOCAL_CONNECTIONS:
            warnings += lockout_warnings(privileged, controller, args["ssh_port"])
        for warning in warnings:
            self._display.warning(str(warning))
        store = SetStore(args["set_store"] or os.path.join(C.DEFAULT_LOCAL_TMP, SET_STORE))
        kubernetes = args["source"] == "kubernetes"
        hosts_result = {host: host_result(state, store, kubernetes or may_host_vms(hostvars.get(host, {})))
                        for host, state in states.items()}
        result.update(
            changed=False,
            hosts=hosts_result,
            summary={host: summary(state) for host, state in hosts_result.items()},
            privileged=[rule_to_dict(r) for r in privileged],
            controller_addresses=controller,
            set_store=store.path,
        )
        if args["expected"]:
            probes = probes_between(hostvars, hosts, args["probe_ports"] or [])
            result["expected"] = explained_matrix(fleet, policies, probes, options)
        if args["explain"]:
            try:
                result["explained"] = explain(fleet, policies, options=options, **args["explain"])
            except ExplainError as error:
                return failure(result, ["explain: %s" % error])
        return result

    def _bridge_query(self, result: Dict[str, Any], args: Mapping[str, Any],
                      task_vars: Mapping[str, Any]) -> Dict[str, Any]:
        """stage=bridge_query: only which hosts of the batch the bridge query runs on, and with what; the
        inventory's variables it read are kept for the compile (inventory_read), its token returned."""
        batch = list(args["hosts"] or task_vars.get("ansible_play_batch") or task_vars.get("hostvars", {}))
        reading = read_inventory(task_vars, batch)
        query, errors = bridge_query(args, batch, reading[0])
        if errors:
            return failure(result, errors)
        token = inventory_read.keep(C.DEFAULT_LOCAL_TMP, reading, batch, list(task_vars.get("hostvars", {})))
        result.update(changed=False, bridge_query=query, variables_read=token)
        return result

    def _validated_args(self, task_vars: Mapping[str, Any]) -> Dict[str, Any]:
        """The task's arguments, validated; policies and namespaces not given are the variables'
        (FROM_VARIABLES). The validator deep-copies every value: the policies and namespaces of a big
        fleet (1,000 manifests) made that copy the costliest step of validation. A list (a mapping)
        passes its check unchanged, so such values are checked apart and kept as given."""
        given = dict(self._task.args)
        listing = given.get("stage") == "bridge_query"  # reads no policy: not the 1,000 manifests' conversion
        for name, variable in FROM_VARIABLES.items():
            if name not in given and variable in task_vars and not (listing and name == "policies"):
                raw = task_vars[variable]
                plain = literal_copy(raw)
                given[name] = to_plain(self._templar.template(raw)) if plain is NOT_LITERAL else plain
        bulk = {name: given.pop(name) for name, kind in BULK_ARGUMENTS.items() if isinstance(given.get(name), kind)}
        validation = ArgumentSpecValidator(ARGUMENT_SPEC).validate(given)
        if validation.error_messages:  # unknown options were refused before, by _VALID_ARGS
            raise AnsibleActionFail(validation.errors.msg, obj=self._task.args)
        return dict(validation.validated_parameters, **bulk)

    def _detected_controller(self, hostvars: Mapping[str, Mapping[str, Any]]) -> List[str]:
        """Where the controller's sessions come from, as the managed hosts see it."""
        seen = [ssh_client_address(v.get("ansible_env", {}).get("SSH_CLIENT", "")) for v in hostvars.values()]
        if self._connection.transport in SSH_CONNECTIONS and not any(seen):
            out = self._low_level_execute_command("echo $SSH_CLIENT").get("stdout", "")
            seen.append(ssh_client_address(out))
        return sorted({a for a in seen if a})


def may_host_vms(host_vars: Mapping[str, Any]) -> bool:
    """A hypervisor of the inventory (netpol_workloads): its bridge-mode tables are managed even
    without VMs now, so the chains of VMs that left go with them. With netpol_source=kubernetes every
    host's are (a VMI may have left it since the last run)."""
    return "netpol_workloads" in host_vars


def bridge_query(args: Mapping[str, Any], batch: Sequence[str],
                 plain: Mapping[str, Mapping[str, Any]]) -> Tuple[List[Dict[str, Any]], List[str]]:
    """The hosts of the batch whose bridges compile must read, in batch order, each as {host, ports, fdb}
    (netpol.fleet.netpol_bridge state=query's options), and the errors. The hypervisors of the inventory
    (netpol_workloads) with their VMs' ports and uplinks; with netpol_source=kubernetes also the hosts
    the cluster's VMIs run on now, with their bridges' forwarding database (a VMI's port is found by its
    MAC there). A fleet without hypervisors or VMIs: an empty list, and no host is contacted.
    plain: every inventory host's fleet variables (read_inventory's)."""
    kubernetes = args["source"] == "kubernetes"
    wanted = {h for h in batch if isinstance(plain[h].get("netpol_workloads"), list)}
    if kubernetes:
        try:
            inventory = load_fleet(plain, args["namespaces"])
        except InputErrors:  # the compile reports them; Nodes are mapped by name then
            inventory = EMPTY_FLEET
        vmi_hosts, errors = read_vmi_hosts(args["kubernetes"], plain, inventory)
        if errors:
            return [], errors
        wanted.update(vmi_hosts)
    return [{"host": h, "ports": query_ports(plain[h]), "fdb": kubernetes} for h in batch if h in wanted], []


def query_ports(host_vars: Mapping[str, Any]) -> List[str]:
    """The ports to read on a hypervisor: its VMs' (netpol_workloads[].interface) and its uplinks."""
    workloads = host_vars.get("netpol_workloads")
    ports = [w["interface"] for w in workloads if isinstance(w, Mapping) and isinstance(w.get("interface"), str)] \
        if isinstance(workloads, list) else []
    ports += [p for p in uplink_ports(host_vars.get(UPLINKS_VARIABLE)) if p not in ports]
    return ports


def with_bridge_facts(hostvars: Dict[str, Dict[str, Any]], results: Sequence[Any]) -> Dict[str, Dict[str, Any]]:
    """hostvars with each queried host's bridge query result as its netpol_bridge_facts. The results are
    the items of the batch's one query task (run_once, delegated to each host in a loop), each naming
    its host; a registered netpol_bridge_facts in hostvars is that task's, the same on every host."""
    for one in results:
        item = one.get("item") if isinstance(one, Mapping) else None
        host = item.get("host") if isinstance(item, Mapping) else None
        if host in hostvars and not one.get("failed") and not one.get("skipped"):
            hostvars[host][FACTS_VARIABLE] = {k: to_plain(one[k]) for k in QUERY_FACTS if k in one}
    return hostvars


def policy_base_dir(given: Optional[str], task_vars: Mapping[str, Any]) -> str:
    """Where relative policy paths start: the given directory, else the directory of the inventory
    that defines the (first) host, else the current directory (`-i host1,host2,` has no directory).
    Never the playbook's directory: run by FQCN, that lies inside the installed collection."""
    return given or task_vars.get("inventory_dir") or os.getcwd()


NO_POLICIES = (
    "netpol_policies, netpol_policy_paths: no NetworkPolicy found in any source: this run would leave every "
    "workload unisolated (every DROP removed). Removing protection is playbooks/remove.yml's job; if a fleet "
    "without any policy is really meant, set netpol_allow_no_policies: true")


def known_variables() -> frozenset:
    return settings.known_variables(settings.role_options(COLLECTION_ROOT))


HostValues = Dict[str, Dict[str, Any]]  # host -> variable -> its value there, as plain data


def read_inventory(task_vars: Mapping[str, Any],
                   batch: Sequence[str] = ()) -> Tuple[Dict[str, Dict[str, Any]], Dict[str, str], HostValues]:
    """Every inventory host's fleet variables (fleet_vars), every netpol_ variable with where it was
    set (variable_origins), and each host of the batch's own values of the fleet-wide variables
    (for per_host_value_errors), in one pass: Ansible computes a host's variables anew on each
    hostvars[host], the bulk of a big inventory's cost."""
    hostvars = task_vars.get("hostvars", {})
    origins = add_origins({}, task_vars)
    plain: Dict[str, Dict[str, Any]] = {}
    own: HostValues = {}
    in_batch, shared = set(batch), SharedValues()
    for host in hostvars:
        variables = hostvars[host]
        plain[host] = host_fleet_vars(variables)
        add_origins(origins, variables)
        if host in in_batch:
            own[host] = {name: shared.plain(variables, name) for name in FLEET_WIDE_OPTIONS.values() if name in variables}
    return plain, origins, {host: own[host] for host in batch if host in own}


def variable_origins(task_vars: Mapping[str, Any]) -> Dict[str, str]:
    """Every netpol_ variable of this host and of every inventory host, with where it was set."""
    return read_inventory(task_vars)[1]


class SharedValues:
    """Plain values of variables, converted once per value that many hosts share. A value set for the
    whole inventory (group_vars/all, extra vars: 1,000 manifests in netpol_policies) is one object in
    every host's variables; templating and converting it for each of 5,000 hosts was the compile's
    costliest step. A value holding a template is converted on every host (it may differ per host)."""

    def __init__(self):
        self._plain: Dict[int, Any] = {}  # id(raw value) -> its plain value
        self._keep: List[Any] = []  # keeps the ids above from being reused

    def plain(self, variables: Mapping[str, Any], name: str) -> Any:
        raw = getattr(variables, "_vars", variables)[name]  # hostvars[host] templates on access; its _vars do not
        if id(raw) in self._plain:
            return self._plain[id(raw)]
        value = templated(variables, name)
        if not holds_template(raw):
            self._keep.append(raw)
            self._plain[id(raw)] = value
        return value


def holds_template(value: Any) -> bool:
    """Whether a raw (not yet templated) value has a Jinja2 expression, statement or comment in it."""
    if isinstance(value, Mapping):
        return any(holds_template(k) or holds_template(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(holds_template(v) for v in value)
    return isinstance(value, str) and any(mark in value for mark in ("{{", "{%", "{#"))


def add_origins(found: Dict[str, str], variables: Mapping[str, Any]) -> Dict[str, str]:
    """`found` with the netpol_ variables of `variables` it lacks, each with where it was set."""
    for name in [n for n in variables if str(n).startswith(settings.PREFIX) and str(n) not in found]:
        found[str(name)] = origin_of(variables, name)
    return found


def origin_of(variables: Mapping[str, Any], name: str) -> str:
    """file:line where Ansible read the variable, or "" when it cannot tell."""
    if Origin is None:
        return ""
    try:
        origin = Origin.get_tag(variables[name])
    except Exception:  # noqa: BLE001 - a value that does not template still has a name to report
        return ""
    return str(origin) if origin is not None and origin is not Origin.UNKNOWN else ""


def variable_value_errors(args: Mapping[str, Any], groups: Mapping[str, Any]) -> List[str]:
    """Every value checked before any host changes, each error naming the variable users set."""
    rollback = args.get("rollback") or {}
    log = args.get("log") or {}
    values = {
        "netpol_ssh_port": args["ssh_port"],
        "netpol_log_group": log.get("group"),
        "netpol_log_burst": log.get("burst"),
        "netpol_rollback_timeout": rollback.get("timeout"),
        "netpol_rollback_confirm_timeout": rollback.get("confirm_timeout") if _positive(rollback.get("timeout")) else None,
        "netpol_rollback_dir": rollback.get("dir"),
        "netpol_bridge_drop_unmanaged": args.get("bridge_drop_unmanaged"),
    }
    errors = settings.value_errors(values)
    if log.get("limit") is not None:
        try:
            limit_text(str(log["limit"]))
        except ValueError as reason:
            errors.append("netpol_log_limit: %s" % reason)
    group = args["control_plane_group"]
    if group != DEFAULT_CONTROL_PLANE_GROUP and group not in groups:
        errors.append("netpol_control_plane_group: %r is not a group of the inventory" % group)
    return errors


def play_wide_names(task: Any) -> frozenset:
    """The variables the play gives every host alike, above the inventory's precedence: the play's vars,
    the role's parameters and vars, block and task vars (include_role's vars among them). hostvars holds
    none of them, but Ansible uses them over every host's inventory value: such a variable has no
    per-host value. One holding a template is left out (it may template differently per host)."""
    found: Dict[str, Any] = {}
    play = task.get_play() if callable(getattr(task, "get_play", None)) else None
    role = getattr(task, "_role", None)
    for scope in (play.get_vars() if play is not None else None,
                  role.get_vars(task.get_dep_chain(), include_params=True) if role is not None else None,
                  task.get_vars()):
        if isinstance(scope, Mapping):
            found.update(scope)
    return frozenset(name for name, value in found.items() if not holds_template(value))


def per_host_value_errors(args: Mapping[str, Any], own_values: HostValues, running_host: str,
                          play_wide: frozenset = frozenset()) -> List[str]:
    """A fleet-wide variable that a host of the run sets to a value of its own, one error per host and
    variable: the compile would use the running host's value for every host. own_values: read_inventory's;
    a value many hosts share (one object) is compared once. A variable the play sets for every host
    (play_wide_names) overrides every inventory value: none is a per-host one."""
    errors = []
    differs: Dict[Tuple[str, int], bool] = {}  # (option, id(plain value)) -> whether it differs from the running host's
    for host, values in own_values.items():
        for option, name in FLEET_WIDE_OPTIONS.items():
            if name not in values or name in play_wide:
                continue
            value = _as_option(option, values[name])
            key = (option, id(values[name]))
            if key not in differs:
                differs[key] = value != args[option]
            if differs[key]:
                errors.append(
                    "%s: host %s sets it to %r, but the compile runs once for the whole fleet (on %s) with %r: "
                    "a per-host value would be ignored. Give every host the same %s (group_vars/all, or the play)"
                    % (name, host, value, running_host or "the running host", args[option], name))
    return errors


def _as_option(option: str, value: Any) -> Any:
    """A host's value as the action's argument spec converts the running host's (22 and "22" agree)."""
    kind = ARGUMENT_SPEC[option]["type"]
    try:
        return {"int": check_type_int, "bool": check_type_bool, "list": check_type_list, "dict": check_type_dict,
                "str": check_type_str}.get(kind, lambda v: v)(value)
    except (TypeError, ValueError):
        return value


def _positive(value: Any) -> bool:
    return str(value).strip().isdigit() and int(str(value).strip()) > 0


def load_inputs(args: Mapping[str, Any], hostvars: Mapping[str, Any],
                base_dir: str) -> Tuple[Tuple[Policy, ...], Fleet, List[str], List[str]]:
    """Policies, fleet, warnings, and the errors of both: users fix everything in one round."""
    policies: Tuple[Policy, ...] = ()
    fleet = EMPTY_FLEET
    warnings: List[str] = []
    errors: List[str] = []
    try:
        policies, warnings = load_policies(args["policies"], args["policy_paths"], base_dir)
    except InputErrors as e:
        errors += [str(error) for error in e.errors]
    try:
        fleet = load_fleet(hostvars, args["namespaces"])
    except InputErrors as e:
        errors += [str(error) for error in e.errors]
    return policies, fleet, list(warnings), errors


def limited_run_warnings(fleet: Fleet, policies: Sequence[Policy], options: CompileOptions,
                         in_run: Sequence[str], outside: Sequence[str], port_bridges=None, uplinks=None) -> List[str]:
    """A --limit run changes only its hosts, but hosts outside it hold the run's workloads'
    addresses in their sets: a workload that is new (or moved, or relabelled) is not yet known
    there, so those peers keep denying it (or allowing its old address) until they run too.
    The warning names them; updating them in this run would break --limit's promise."""
    if not outside:
        return []
    ours = {a for w in fleet.workloads if w.host in set(in_run) for a in w.addresses}
    states = compile_fleet(fleet, policies, options, hosts=outside, port_bridges=port_bridges, bridge_uplinks=uplinks)
    peers = [host for host, state in states.items()
             if any(_member_address(m.entry) in ours for s in state.sets for m in s.members)]
    if not peers:
        return []
    return ["netpol: this run is limited: %s, outside it, select workloads of this run (%s) by address. "
            "A workload that is new or changed its addresses or labels is not in their sets until they run "
            "too (until then they deny it or allow its old state): run again without --limit, or with "
            "--limit %s" % (", ".join(peers), ", ".join(sorted(set(in_run))), ",".join(sorted(set(in_run) | set(peers))))]


def _member_address(entry: str) -> str:
    """The address of a set entry (10.0.0.1, 10.0.0.1/32, 10.0.0.1,tcp:80)."""
    address = entry.split(",")[0]
    return address.rsplit("/", 1)[0] if address.endswith(("/32", "/128")) else address


def probes_between(hostvars: Mapping[str, Mapping[str, Any]], hosts: Sequence[str],
                   extra_ports: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """The flows the verify role probes among hosts: each address of each other host, each port.

    Each carries src_address, the source's own address of the flow's family, so the simulator
    can place sources that are no workload (a management host) by address.
    """
    endpoints = {}
    for host in hosts:
        variables = hostvars[host]
        addresses = variables.get("netpol_addresses") or [
            a for fact in ("ansible_all_ipv4_addresses", "ansible_all_ipv6_addresses")
            for a in variables.get(fact) or [] if not a.lower().startswith("fe80")]
        endpoints[host] = (addresses, variables.get("netpol_ports") or [])
    flows = [flow for src in hosts for flow in flow_targets(src, endpoints, extra_ports)]
    for flow in flows:
        own = [bare_address(a) for a in endpoints[flow["src"]][0] if address_family(a) == flow["family"]]
        if own:
            flow["src_address"] = own[0]
    return flows


def fleet_vars(hostvars: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
    """host -> its fleet variables and the SSH_CLIENT it saw, templated into plain data once."""
    return {host: host_fleet_vars(hostvars[host]) for host in hostvars}


def host_fleet_vars(variables: Mapping[str, Any]) -> Dict[str, Any]:
    """One host's fleet variables and the SSH_CLIENT it saw, as plain data."""
    plain = {k: templated(variables, k) for k in HOST_VARIABLES if k in variables}
    ssh_client = (variables.get("ansible_env") or {}).get("SSH_CLIENT") if "ansible_env" in variables else None
    if ssh_client:
        plain["ansible_env"] = {"SSH_CLIENT": str(ssh_client)}
    return plain


def templated(variables: Mapping[str, Any], name: str) -> Any:
    """variables[name] as plain data. hostvars[host] templates every value it is asked for (a deep, tagging
    copy, even of plain data: most of a 5,000-host inventory's reading); a raw value that is plain data
    already (no Jinja2 in it, no vaulted or lazy value) is taken as it is."""
    raw = getattr(variables, "_vars", None)
    plain = literal_copy(raw[name]) if raw is not None and name in raw else NOT_LITERAL
    return to_plain(variables[name]) if plain is NOT_LITERAL else plain


LITERAL_TYPES = (str, int, float, bool, type(None))
NOT_LITERAL = object()  # literal_copy's answer for a value that must be templated


class _NotLiteral(Exception):
    pass


def literal_copy(value: Any) -> Any:
    """Plain data (mappings and lists of strings without template marks, numbers, booleans, null) as builtin
    types (to_plain's), in one walk; NOT_LITERAL for any other value (a template anywhere in it, a vaulted or
    lazy value), which must be templated: the walk that checks is the walk that copies."""
    try:
        return _literal(value)
    except _NotLiteral:
        return NOT_LITERAL


def _literal(value: Any) -> Any:
    if isinstance(value, dict):
        return {_literal_key(k): _literal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_literal(v) for v in value]
    if isinstance(value, str):
        if "{{" in value or "{%" in value or "{#" in value:
            raise _NotLiteral()
        return str(value)
    if isinstance(value, LITERAL_TYPES):
        return value
    raise _NotLiteral()


def _literal_key(key: Any) -> str:
    if not isinstance(key, str):
        raise _NotLiteral()
    return _literal(key)


def to_plain(value: Any) -> Any:
    """Templated Ansible containers and tagged strings as builtin types."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def ssh_client_address(ssh_client: str) -> str:
    """The client address of an SSH_CLIENT value ("addr port port"), or "" if none.

    An sshd on a dual-stack socket reports an IPv4 client as ::ffff:192.0.2.1, but its packets are
    IPv4 ones: the privileged SSH rule must admit 192.0.2.1 (the address grammar rejects the mapped form).
    """
    address = (ssh_client or "").split(" ")[0].strip()
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return ""
    return str(getattr(ip, "ipv4_mapped", None) or ip)


def privileged_vars(args: Mapping[str, Any], controller: Sequence[str], fleet: Fleet,
                    control_plane: Sequence[str]) -> Dict[str, Any]:
    """The privileged module's variables: the role's, plus addresses known only from the fleet."""
    nodes = dict(fleet.node_addresses)
    variables = {name: args[option] for option, name in PRIVILEGED_OPTIONS.items()}
    variables.update(
        netpol_controller_addresses=list(controller),
        netpol_node_addresses=[a for host in sorted(nodes) for a in nodes[host]],
        netpol_control_plane_addresses=[a for host in control_plane for a in nodes.get(host, ())],
    )
    return variables


def log_options(log: Optional[Mapping[str, Any]]) -> Optional[LogOptions]:
    return LogOptions(group=log["group"], limit=log["limit"], burst=log["burst"]) if log else None


def host_result(state: HostState, store: "SetStore", hypervisor: bool = False) -> Dict[str, Any]:
    """A host's state as netpol_host takes it: the names of its sets, each with the digest under which
    its content is in the store (never the members: a fleet-wide set is written once, not once per
    host), then a table entry for every base table (and, on a hypervisor, for every bridge-mode
    table), and the bridges whose br_netfilter flags must be on."""
    return with_base_tables({
        "host": state.host,
        "sets": {s.name: store.digest(s) for s in state.sets},
        "tables": [as_plain(t) for t in state.tables],
        "bridges": list(state.bridges),
    }, BASE_TABLES + (BRIDGE_TABLES if hypervisor or state.bridges else ()))


def as_plain(value: Any) -> Any:
    """dataclasses.asdict for the frozen IR: dataclasses as dicts, tuples of them as tuples. Unlike asdict
    it does not deep-copy the immutable leaves (rule texts), which made it the costliest step of 5,000
    hosts' results."""
    if is_dataclass(value):
        return {f.name: as_plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple) and any(is_dataclass(v) for v in value):
        return tuple(as_plain(v) for v in value)
    return value


class SetStore:
    """Each distinct set once, as a file in `ipset save` form named by the digest of its content."""

    def __init__(self, path: str):
        self.path = path
        self._digests: Dict[int, str] = {}  # id(IpSet) -> digest: compile shares one object per set
        self._keep: List[IpSet] = []  # keeps the ids above from being reused

    def digest(self, ipset: IpSet) -> str:
        if id(ipset) not in self._digests:
            self._keep.append(ipset)
            self._digests[id(ipset)] = self._write(render_restore([ipset]))
        return self._digests[id(ipset)]

    def _write(self, text: str) -> str:
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
        path = os.path.join(self.path, digest + SET_SUFFIX)
        if not os.path.exists(path):  # content-addressed: an existing file already holds this text
            os.makedirs(self.path, mode=0o700, exist_ok=True)
            partial = "%s.%d.partial" % (path, os.getpid())
            with open(partial, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(partial, path)
        return digest


def with_base_tables(state: Dict[str, Any], base_tables=BASE_TABLES) -> Dict[str, Any]:
    """The state with an (empty) entry for every base table it lacks."""
    present = {(t["family"], t["name"]) for t in state.get("tables", ())}
    missing = [{"family": f, "name": n, "chains": [], "jumps": []} for f, n in base_tables if (f, n) not in present]
    return dict(state, tables=list(state.get("tables", ())) + missing)


def summary(state: Mapping[str, Any]) -> Dict[str, int]:
    tables = state.get("tables", ())
    return {
        "sets": len(state.get("sets", ())),
        "chains": sum(len(t["chains"]) for t in tables),
        "rules": sum(len(c["rules"]) for t in tables for c in t["chains"]),
    }


def failure(result: Dict[str, Any], errors: List[str]) -> Dict[str, Any]:
    """Fail with every error at once: users fix them in one round, nothing was applied."""
    result.update(
        failed=True,
        errors=errors,
        msg="netpol: invalid input, no host was changed:\n" + "\n".join("- " + e for e in errors),
    )
    return result
