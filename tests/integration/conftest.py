# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared fixtures for integration tests: run Ansible from pytest, build labs of netns hosts.

Every test owns a namespace prefix (npa..., npv..., ...): its lab's hosts and switch all start with
it, and the fixtures delete whatever namespaces carry it when the test ends, pass or fail.
session_prefix("npa", "l1") gives "npa<token>-l1-", the token differing between pytest sessions so
that two sessions on one machine never share a namespace.

    def test_something(make_lab):
        lab = make_lab(session_prefix("npa", "x"), {"a": {"netpol_addresses": ["10.9.0.1/24"]}, "b": {...}})
        result = run_playbook("playbooks/verify.yml", lab.inventory)   # hosts <prefix>a, <prefix>b
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
NETNS_RUN_DIR = Path("/run/netns")
LAB_PLAYBOOK = "playbooks/lab.yml"
EMBEDDED_LAB = REPO / "inventories" / "lab"

# Test-inventory hosts are netns hosts run with the controller's (the venv's) Python.
NETNS_HOST_VARS = {
    "ansible_connection": "netpol.fleet.netns",
    "ansible_python_interpreter": "{{ ansible_playbook_python }}",
}


def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    """Everything under tests/integration needs root and the kernel tools."""
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.integration)


# ---- running Ansible ----------------------------------------------------------------------------


def ansible_env(**overrides: str) -> Dict[str, str]:
    """The environment the README's commands give Ansible: the venv, the repo's ansible.cfg."""
    env = dict(os.environ)
    env.update(
        PATH="%s:%s" % (VENV_BIN, env.get("PATH", "")),
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(REPO / "collection"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_DEPRECATION_WARNINGS="0",
        LC_ALL="C.UTF-8",
    )
    env.update(overrides)
    return env


def _run(argv: List[str], check: bool, env: Dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise AssertionError("%s failed (rc=%d)\n--- stdout\n%s\n--- stderr\n%s"
                             % (" ".join(argv), result.returncode, result.stdout, result.stderr))
    return result


def run_playbook(playbook: str, inventory: Path, *args: str, check: bool = True,
                 env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """ansible-playbook (path relative to the repo) on an inventory; AssertionError with output on failure."""
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(REPO / playbook), *args]
    return _run(argv, check, env or ansible_env())


def run_adhoc(pattern: str, inventory: Path, module: str, module_args: str = "", *args: str,
              check: bool = True) -> Dict[str, dict]:
    """`ansible PATTERN -m MODULE -a ARGS`: each host's result (as the tree callback saves it), by host."""
    with tempfile.TemporaryDirectory(prefix="npa-tree-") as tree:
        argv = [str(VENV_BIN / "ansible"), pattern, "-i", str(inventory), "-m", module, "-a", module_args,
                "--tree", tree, *args]
        _run(argv, check, ansible_env())
        return {path.name: json.loads(path.read_text()) for path in Path(tree).iterdir()}


# ---- network namespaces -------------------------------------------------------------------------

# Two hex digits per process: xdist workers run different tests anyway, and a second pytest session
# on the same machine (another checkout, CI beside a developer) gets other names.
SESSION_TOKEN = "%02x" % random.SystemRandom().randrange(256)


def session_prefix(owner: str, name: str) -> str:
    """A namespace prefix for one test: owner (the helper's npa, npv, ...), this session's token, name."""
    return "%s%s-%s-" % (owner, SESSION_TOKEN, name)


def netns_names(prefix: str) -> List[str]:
    """Namespaces whose names start with prefix."""
    if not NETNS_RUN_DIR.is_dir():
        return []
    return sorted(name for name in os.listdir(NETNS_RUN_DIR) if name.startswith(prefix))


def delete_netns(prefix: str) -> None:
    """Delete every namespace starting with prefix (the test's own; never pass a bare 'np')."""
    assert len(prefix) >= 3, "refusing to delete namespaces by a prefix as short as %r" % prefix
    for name in netns_names(prefix):
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


# ---- lab inventories ----------------------------------------------------------------------------


def write_lab_inventory(directory: Path, prefix: str, hosts: Dict[str, dict],
                        fleet_vars: Optional[dict] = None) -> Path:
    """A lab inventory in directory: host prefix+key with the key's vars, switch prefix+'sw'.

    hosts maps a short name to host vars (netpol_addresses, netpol_ports, netpol_labels, ...);
    fleet_vars go to group `all` (netpol_namespaces, netpol_policies, ...).
    """
    directory.mkdir(parents=True, exist_ok=True)
    inventory = {"all": {
        "vars": {"lab_prefix": prefix, **(fleet_vars or {})},
        "children": {"lab": {
            "vars": dict(NETNS_HOST_VARS),
            "hosts": {prefix + name: dict(host_vars) for name, host_vars in hosts.items()},
        }},
    }}
    path = directory / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return path


def copy_lab_inventory(directory: Path, prefix: str) -> Path:
    """The embedded lab inventory with every `lab-` name (hosts, switch) renamed to start with prefix."""
    target = directory / "lab"
    shutil.copytree(EMBEDDED_LAB, target)
    for path in target.rglob("*.yml"):
        path.write_text(re.sub(r"\blab-", prefix, path.read_text()))
    return target


@dataclass
class Lab:
    prefix: str
    inventory: Path
    hosts: List[str]  # inventory host names, which are also their namespace names

    def namespaces(self) -> List[str]:
        return netns_names(self.prefix)


@pytest.fixture
def lab_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("integration tests build network namespaces and need root")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 `ip` is missing (make deps)")


# Every prefix a test registered in this process, checked once more when the session ends.
REGISTERED_PREFIXES: List[str] = []


@pytest.fixture
def netns_cleanup(lab_root) -> Iterator[Callable[[str], None]]:
    """Register a prefix; its namespaces are deleted at teardown, also when the test fails."""
    prefixes: List[str] = []
    yield prefixes.append
    REGISTERED_PREFIXES.extend(prefixes)
    for prefix in prefixes:
        delete_netns(prefix)


@pytest.fixture(scope="session", autouse=True)
def no_namespace_left_behind() -> Iterator[None]:
    """The suite leaves no namespace behind: a leftover is an error of the session's last test."""
    yield
    leftovers = sorted({name for prefix in REGISTERED_PREFIXES for name in netns_names(prefix)})
    assert not leftovers, "namespaces left behind by the integration tests: %s" % " ".join(leftovers)


@pytest.fixture
def make_lab(tmp_path: Path, netns_cleanup) -> Iterator[Callable[..., Lab]]:
    """Factory: make_lab(prefix, hosts, fleet_vars=None) writes an inventory, builds it with
    playbooks/lab.yml and returns a Lab. Torn down (playbook state=absent, then any namespace
    left with the prefix) when the test ends. make_lab(prefix) alone builds the embedded lab
    inventory renamed onto prefix."""
    labs: List[Lab] = []

    def build(prefix: str, hosts: Optional[Dict[str, dict]] = None, fleet_vars: Optional[dict] = None) -> Lab:
        netns_cleanup(prefix)
        directory = tmp_path / ("lab-" + prefix)
        if hosts is None:
            inventory = copy_lab_inventory(directory, prefix)
            names = _hosts_of(inventory)
        else:
            inventory = write_lab_inventory(directory, prefix, hosts, fleet_vars)
            names = [prefix + name for name in hosts]
        lab = Lab(prefix, inventory, names)
        labs.append(lab)
        run_playbook(LAB_PLAYBOOK, inventory)
        return lab

    yield build
    for lab in labs:
        run_playbook(LAB_PLAYBOOK, lab.inventory, "-e", "state=absent", check=False)


def _hosts_of(inventory: Path) -> List[str]:
    listing = json.loads(_run([str(VENV_BIN / "ansible-inventory"), "-i", str(inventory), "--list"],
                              True, ansible_env()).stdout)
    return sorted(listing["_meta"]["hostvars"])
