# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's own variables (netpol_*): names and values checked before any host changes.

A typo in a variable name (netpol_polices) would otherwise compile zero policies and remove
every DROP; a value out of range (netpol_ssh_port: 70000) would only fail in the kernel,
host by host, with a message naming the rule instead of the variable. Pure Python: the
action plugin hands in names, where Ansible says they were set, and values.
"""

from __future__ import annotations

import difflib
import os
from typing import Any, Callable, Iterable, List, Mapping, Optional

PREFIX = "netpol_"

# Per-host inventory variables the compile reads (not role options, see docs/usage.md; netpol_node_name:
# docs/kubernetes.md).
HOST_VARIABLES = ("netpol_namespace", "netpol_labels", "netpol_addresses", "netpol_ports", "netpol_workloads",
                  "netpol_bridge_facts", "netpol_node_name", "netpol_bridge_uplinks")
# Variables of the collection's playbooks (keywords, not role options).
PLAYBOOK_VARIABLES = ("netpol_gather_facts", "netpol_serial", "netpol_verify_play_hosts", "netpol_verify_gather_facts")
# What the roles and playbooks register or set themselves; they persist between plays of one run.
INTERNAL_VARIABLES = (
    "netpol_compiled", "netpol_bridge_query", "netpol_rollback_armed", "netpol_host", "netpol_log_options", "netpol_sets_result",
    "netpol_tables_result", "netpol_purge_result", "netpol_tables_changed", "netpol_changes",
    "netpol_verify_probe", "netpol_verify_matrix", "netpol_verify_comparison", "netpol_side_by_side",
    "netpol_open", "netpol_verify_listen", "netpol_verify_stop", "netpol_verify_report", "netpol_conntrack_result",
    "netpol_host_result", "netpol_sets_changed", "netpol_bridge_result",
    "netpol_explain_hosts", "netpol_explain_listen", "netpol_explain_before", "netpol_explain_probe",
    "netpol_explain_after", "netpol_explain_stop", "netpol_explain_measured", "netpol_explain_src_read",
    "netpol_explain_dst_read",
)

PORT_RANGE = (1, 65535)
NFLOG_GROUP_RANGE = (0, 65535)
LIMIT_BURST_RANGE = (1, 10000)  # xt_limit refuses a burst above 10000


def known_variables(role_options: Iterable[str]) -> frozenset:
    """Every netpol_ name the collection reads or sets: the roles' documented options and the rest."""
    names = [n for n in role_options if n.startswith(PREFIX)]
    return frozenset(names + list(HOST_VARIABLES + PLAYBOOK_VARIABLES + INTERNAL_VARIABLES))


def role_options(collection_root: str) -> List[str]:
    """The option names of every role's meta/argument_specs.yml (each role's documented variables)."""
    import yaml  # controller side only

    roles = os.path.join(collection_root, "roles")
    names: List[str] = []
    for role in sorted(os.listdir(roles)) if os.path.isdir(roles) else []:
        path = os.path.join(roles, role, "meta", "argument_specs.yml")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as stream:
                specs = (yaml.safe_load(stream) or {}).get("argument_specs") or {}
            names += [name for spec in specs.values() for name in (spec.get("options") or {})]
    return names


def unknown_variable_errors(found: Mapping[str, str], known: Iterable[str]) -> List[str]:
    """One error per netpol_ variable the collection does not know, with where it was set
    (found: name -> origin, "" when Ansible cannot tell) and the closest known name."""
    known = sorted(known)
    errors = []
    for name in sorted(n for n in found if n.startswith(PREFIX) and n not in known):
        where = " (set in %s)" % found[name] if found[name] else ""
        close = difflib.get_close_matches(name, known, n=1)
        hint = "; did you mean %s?" % close[0] if close else ""
        errors.append("%s%s: not a variable of netpol.fleet%s (a misspelt variable is ignored by Ansible, "
                      "and an ignored policy variable would open the fleet)" % (name, where, hint))
    return errors


def value_errors(values: Mapping[str, Any]) -> List[str]:
    """Range and form errors of the variables' values (their types are the argument spec's job)."""
    errors: List[str] = []
    for name, check in VALUE_CHECKS.items():
        if values.get(name) is not None:
            problem = check(values[name])
            if problem:
                errors.append("%s: %r %s" % (name, values[name], problem))
    return errors


def _in_range(low: int, high: int, what: str) -> Callable[[Any], Optional[str]]:
    def check(value: Any) -> Optional[str]:
        number = _integer(value)
        if number is None or not low <= number <= high:
            return "is not %s (%d-%d)" % (what, low, high)
        return None
    return check


def _integer(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    try:
        return int(value) if str(value).strip().lstrip("-").isdigit() else None
    except (TypeError, ValueError):
        return None


BOOLEAN_WORDS = {"true": True, "false": False}


def boolean(value: Any) -> Optional[bool]:
    """true/false (a YAML boolean, or its text after templating); None for anything else."""
    if isinstance(value, bool):
        return value
    return BOOLEAN_WORDS.get(str(value).strip().lower()) if isinstance(value, str) else None


def _boolean(value: Any) -> Optional[str]:
    return None if boolean(value) is not None else "is not a boolean (true or false)"


def _absolute_path(value: Any) -> Optional[str]:
    if not isinstance(value, str) or not os.path.isabs(value) or "\n" in value:
        return "is not an absolute path"
    return None


VALUE_CHECKS = {
    "netpol_ssh_port": _in_range(*PORT_RANGE, "a port"),
    "netpol_log_group": _in_range(*NFLOG_GROUP_RANGE, "an NFLOG group"),
    "netpol_log_burst": _in_range(*LIMIT_BURST_RANGE, "a limit burst"),
    "netpol_rollback_timeout": _in_range(0, 86400, "a number of seconds"),
    "netpol_rollback_confirm_timeout": _in_range(0, 86400, "a number of seconds"),
    "netpol_rollback_dir": _absolute_path,
    "netpol_bridge_drop_unmanaged": _boolean,
}
