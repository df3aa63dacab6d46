# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine in memory, from Ansible-shaped variables: load, compile, simulate.

A thin seam for callers that hold hostvars and policy variables (the netpol_compile
action, tests, scripts): everything is validated before anything is compiled, and input
errors raise InputErrors naming file, object and field. Pure Python.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.netpol.fleet.plugins.module_utils.compile import compile_fleet
from ansible_collections.netpol.fleet.plugins.module_utils.fleet import load_fleet
from ansible_collections.netpol.fleet.plugins.module_utils.ir import CompileOptions, Fleet, Policy
from ansible_collections.netpol.fleet.plugins.module_utils.parse import load_policies
from ansible_collections.netpol.fleet.plugins.module_utils.simulate import matrix


def load(
    hostvars: Mapping[str, Mapping[str, Any]],
    policies: Optional[Sequence[Any]],
    policy_paths: Optional[Sequence[str]],
    namespaces: Optional[Mapping[str, Any]],
    base_dir: str = ".",
) -> Tuple[Fleet, Tuple[Policy, ...], List[str]]:
    """The fleet and the validated policies, with parse warnings."""
    loaded, warnings = load_policies(policies, policy_paths, base_dir)
    return load_fleet(hostvars, namespaces), loaded, list(warnings)


def compile_from_vars(
    hostvars: Mapping[str, Mapping[str, Any]],
    policies: Optional[Sequence[Any]],
    policy_paths: Optional[Sequence[str]],
    namespaces: Optional[Mapping[str, Any]],
    options: CompileOptions = CompileOptions(),
    hosts: Optional[Iterable[str]] = None,
    base_dir: str = ".",
) -> Tuple[Dict[str, Dict[str, Any]], List[str]]:
    """Each host's HostState as plain data (HostState.to_dict()), and the warnings."""
    fleet, loaded, warnings = load(hostvars, policies, policy_paths, namespaces, base_dir)
    states = compile_fleet(fleet, loaded, options, hosts)
    return {host: state.to_dict() for host, state in states.items()}, warnings


def expected_matrix(
    hostvars: Mapping[str, Mapping[str, Any]],
    policies: Optional[Sequence[Any]],
    policy_paths: Optional[Sequence[str]],
    namespaces: Optional[Mapping[str, Any]],
    options: CompileOptions = CompileOptions(),
    probes: Optional[Iterable[Mapping[str, Any]]] = None,
    base_dir: str = ".",
) -> Tuple[List[Dict[str, Any]], List[str]]:
    """The simulator's flow records (see simulate.matrix), and the warnings."""
    fleet, loaded, warnings = load(hostvars, policies, policy_paths, namespaces, base_dir)
    return matrix(fleet, loaded, probes, options), warnings
