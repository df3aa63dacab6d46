# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection as a user gets it: the Galaxy tarball installed with ansible-galaxy, the playbooks
run by their FQCN (`ansible-playbook netpol.fleet.site`) from a directory of the user's own, with
the user's inventory and none of this checkout's ansible.cfg. Relative netpol_policy_paths start at
the inventory's directory (the playbook's directory is inside the installed collection), and
netpol_policies items may be YAML texts."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Dict

import pytest
import yaml

from conftest import NETNS_HOST_VARS, REPO, VENV_BIN, ansible_env, session_prefix

HOSTS = {
    "web": {"netpol_namespace": "shop", "netpol_labels": {"app": "web"}, "netpol_addresses": ["10.93.0.1/24"]},
    "db": {"netpol_namespace": "shop", "netpol_labels": {"app": "db"}, "netpol_addresses": ["10.93.0.2/24"]},
}
# In a file beside the inventory, named by a relative path.
DB_ADMINS = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-admins, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
    - from: [{ipBlock: {cidr: 10.93.0.200/32}}]
      ports: [{port: 5432}]
"""
# A YAML text in netpol_policies (as lookup('file', ...) gives it).
WEB_TO_DB = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: web}}}]
      ports: [{port: 5432}]
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The tarball `ansible-galaxy collection build` makes, installed as a user installs it."""
    dist, collections = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("collections")
    subprocess.run([str(VENV_BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(dist), str(REPO)],
                   check=True, capture_output=True)
    [tarball] = dist.glob("netpol-fleet-*.tar.gz")
    subprocess.run([str(VENV_BIN / "ansible-galaxy"), "collection", "install", "--force", "--no-deps", "-p",
                    str(collections), str(tarball)], check=True, capture_output=True, env=user_env(collections))
    assert (collections / "ansible_collections" / "netpol" / "fleet" / "playbooks" / "site.yml").is_file()
    return collections


def user_env(collections: Path) -> Dict[str, str]:
    """Only the installed collection, and no ansible.cfg of this checkout."""
    return ansible_env(ANSIBLE_CONFIG=str(collections / "no-ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(collections))


def user_inventory(directory: Path, prefix: str) -> Path:
    """The user's inventory: the lab's hosts, a policy file beside it, another policy as YAML text."""
    (directory / "policies").mkdir(parents=True)
    (directory / "policies" / "db.yml").write_text(DB_ADMINS)
    inventory = {"all": {
        "vars": {"netpol_policy_paths": ["policies/"], "netpol_policies": [WEB_TO_DB],
                 "netpol_gather_facts": False, "netpol_report": False},
        "hosts": {prefix + name: dict(variables, **NETNS_HOST_VARS) for name, variables in HOSTS.items()},
    }}
    path = directory / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def run_fqcn(playbook: str, inventory: Path, collections: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), playbook, *args],
                          cwd=cwd, env=user_env(collections), capture_output=True, text=True, check=False)


def filter_rules(namespace: str) -> str:
    return subprocess.run(["ip", "netns", "exec", namespace, "iptables-save", "-t", "filter"],
                          check=True, capture_output=True, text=True).stdout


def test_playbooks_by_fqcn_read_relative_policy_paths_from_the_inventory_directory(installed, make_lab, tmp_path):
    prefix = session_prefix("npi", "fq")
    lab = make_lab(prefix, HOSTS)
    inventory = user_inventory(tmp_path / "inventory", prefix)
    elsewhere = tmp_path / "work"  # where the user runs ansible-playbook: neither the inventory nor the collection
    elsewhere.mkdir()
    db = prefix + "db"

    missing = run_fqcn("netpol.fleet.site", inventory, installed, elsewhere, "-e", '{"netpol_policy_paths": ["nope/"]}')
    assert missing.returncode != 0
    assert "'nope/': no such file or directory in %s" % inventory.parent in missing.stdout
    assert "NETPOL-" not in filter_rules(db)  # nothing applied

    enforced = run_fqcn("netpol.fleet.site", inventory, installed, elsewhere)
    assert enforced.returncode == 0, enforced.stdout + enforced.stderr
    rules = filter_rules(db)
    assert "shop/db-admins ingress[0]" in rules and "shop/db-from-web ingress[0]" in rules, rules  # the file and the YAML text

    removed = run_fqcn("netpol.fleet.remove", inventory, installed, elsewhere)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert all("NETPOL-" not in filter_rules(host) for host in lab.hosts)


def test_a_netpol_policies_item_that_is_neither_a_manifest_nor_yaml_text_stops_the_run(
        installed, make_lab, tmp_path):
    prefix = session_prefix("npi", "bad")
    lab = make_lab(prefix, HOSTS)
    inventory = user_inventory(tmp_path / "inventory", prefix)
    result = run_fqcn("netpol.fleet.site", inventory, installed, tmp_path, "-e", '{"netpol_policies": [42]}')
    assert result.returncode != 0 and "netpol_policies[0]" in result.stdout, result.stdout
    assert all("NETPOL-" not in filter_rules(host) for host in lab.hosts)
