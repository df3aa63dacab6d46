# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The netpol.fleet.selector lookup, loaded by Ansible's own plugin loader, over inventory-like hostvars."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest
import yaml
from ansible import constants as C
from ansible.errors import AnsibleError

from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import Fleet, Workload
from ansible_collections.netpol.fleet.plugins.plugin_utils.kubernetes.convert import Origin
from ansible_collections.netpol.fleet.plugins.plugin_utils.kubernetes.source import ClusterRead

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
NAME = "netpol.fleet.selector"

HOSTVARS = {
    "web1": {"netpol_namespace": "shop", "netpol_labels": {"app": "web", "tier": "front"},
             "netpol_addresses": ["10.0.0.1", "fd00::1"], "netpol_ports": [{"name": "http", "port": 8080}]},
    "db1": {"netpol_namespace": "billing", "netpol_labels": {"app": "db"}, "netpol_addresses": ["10.0.0.2"]},
    "hv1": {"netpol_addresses": ["192.0.2.1"], "netpol_workloads": [
        {"name": "vm1", "namespace": "shop", "labels": {"app": "web"}, "addresses": ["10.0.1.1"], "interface": "vnet0",
         "mac": "52:54:00:00:01:01"},
    ]},
    "controller": {},
}
NAMESPACES = {"billing": {"labels": {"team": "payments"}}, "shop": {"labels": {"team": "retail"}}}


@pytest.fixture(scope="module")
def selector():
    """The real LookupModule with its documented options registered, as the plugin loader would.

    (The loader itself cannot be used in-process here: pytest imports the collection
    before Ansible's collection finder could be installed.)
    """
    module = importlib.import_module("ansible_collections.netpol.fleet.plugins.lookup.selector")
    C.config.initialize_plugin_configuration_definitions(
        "lookup", NAME, yaml.safe_load(module.DOCUMENTATION)["options"]
    )
    plugin = module.LookupModule()
    plugin._load_name = NAME
    return plugin


def run(selector, *terms, **options):
    variables = {"hostvars": HOSTVARS, "netpol_namespaces": NAMESPACES}
    return selector.run(list(terms), variables=variables, **options)


def test_returns_the_workloads_with_all_they_need(selector):
    assert run(selector, "app=web", namespace="shop") == [
        {"kind": "vm", "node": "hv1", "name": "vm1", "namespace": "shop", "host": "hv1", "labels": {"app": "web"},
         "addresses": ["10.0.1.1"], "ports": []},
        {"kind": "host", "node": "web1", "name": "web1", "namespace": "shop", "host": "web1", "labels": {"app": "web", "tier": "front"},
         "addresses": ["10.0.0.1", "fd00::1"], "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
    ]


@pytest.mark.parametrize(
    "terms, options, names",
    [
        (["app=web"], {}, ["vm1", "web1"]),
        ([""], {}, ["db1", "vm1", "web1"]),
        ([""], {"namespace_selector": "team=payments"}, ["db1"]),
        ([""], {"namespace_selector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}}, ["vm1", "web1"]),
        ([{"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}], {}, ["db1", "vm1"]),
        (["app=db", "tier=front"], {}, ["db1", "web1"]),
        (["app=db"], {"namespace": "shop"}, []),
    ],
)
def test_selectors_and_namespaces(selector, terms, options, names):
    assert [w["name"] for w in run(selector, *terms, **options)] == names


@pytest.mark.parametrize(
    "terms, options, message",
    [
        (["app in (web"], {}, "selector 0: invalid selector 'app in (web': position 12"),
        (["app=web"], {"namespace_selector": "team="}, None),
        ([{"matchLabel": {}}], {}, "selector 0.matchLabel: unknown field 'matchLabel'"),
        ([5], {}, "selector 0 must be a selector string or dict"),
    ],
)
def test_bad_selectors_fail_the_lookup(selector, terms, options, message):
    if message is None:  # a valid selector that matches nothing
        assert run(selector, *terms, **options) == []
        return
    with pytest.raises(AnsibleError, match=message.replace("(", r"\(")):
        run(selector, *terms, **options)


def test_with_the_kubernetes_source_cluster_workloads_join_with_kind_and_node(selector, monkeypatch):
    """The lookup resolves against read_cluster's merged fleet (tested on recorded responses
    in tests/unit/plugins/plugin_utils/kubernetes and against a real API in tests/integration)."""
    module = sys.modules[type(selector).__module__]
    pod = Workload("web-7d4", "shop", (("app", "web"),), ("10.244.1.6",), host="kubernetes:pod/shop/web-7d4")
    calls = []

    def read_cluster(options, hostvars, fleet, policies, declared, find_ports=True):
        calls.append(options)
        assert not find_ports  # a lookup needs no VMI's bridge port
        read = ClusterRead()
        read.inputs.fleet = Fleet(workloads=fleet.workloads + (pod,), namespaces=fleet.namespaces)
        read.inputs.origins = {pod: Origin("Pod", "node-a")}
        return read

    monkeypatch.setattr(module, "read_cluster", read_cluster)
    found = run(selector, "app=web", namespace="shop", source="kubernetes", kubernetes={"context": "prod"})
    assert calls == [{"context": "prod"}]
    assert [(w["kind"], w["name"], w["node"], w["host"]) for w in found] == [
        ("vm", "vm1", "hv1", "hv1"), ("Pod", "web-7d4", "node-a", None), ("host", "web1", "web1", "web1")]


def test_an_invalid_inventory_fails_with_every_problem(selector):
    hostvars = dict(HOSTVARS, bad={"netpol_namespace": "shop", "netpol_addresses": ["10.0.0.300"]})
    with pytest.raises(AnsibleError, match=r"inventory host bad: netpol_addresses\[0\]: '10.0.0.300' is not an IP"):
        selector.run(["app=web"], variables={"hostvars": hostvars})


PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Resolve through the play's hostvars
      ansible.builtin.copy:
        dest: "{{ out }}"
        content: "{{ {'web': query('netpol.fleet.selector', 'app=web', namespace='shop'),
                      'payments': query('netpol.fleet.selector', '', namespace_selector='team=payments')} | to_json }}"
"""

INVENTORY = """
all:
  vars:
    netpol_namespaces: {billing: {labels: {team: payments}}}
    app_name: web
  hosts:
    web1: {netpol_namespace: shop, netpol_labels: {app: "{{ app_name }}"}, netpol_addresses: [10.0.0.1/24]}
    db1: {netpol_namespace: billing, netpol_labels: {app: db}, netpol_addresses: ["fd00::0002"]}
"""


def test_in_a_real_play_with_templated_inventory(tmp_path):
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "inventory.yml").write_text(INVENTORY)
    out = tmp_path / "out.json"
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, "collection"))
    subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(tmp_path / "inventory.yml"),
         str(tmp_path / "play.yml"), "-e", "out=%s" % out],
        check=True, env=env, capture_output=True, cwd=str(tmp_path),
    )
    found = json.loads(out.read_text())
    assert [(w["name"], w["labels"], w["addresses"]) for w in found["web"]] == [("web1", {"app": "web"}, ["10.0.0.1"])]
    assert [(w["name"], w["addresses"]) for w in found["payments"]] == [("db1", ["fd00::2"])]
