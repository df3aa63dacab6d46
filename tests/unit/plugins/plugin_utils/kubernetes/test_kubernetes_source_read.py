# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""netpol_source=kubernetes as the compile action calls it: options, failures, merging."""

from __future__ import annotations

import pytest
from kubernetes_recorded import RecordedServer

from ansible_collections.netpol.fleet.plugins.module_utils.engine.fleet import load_fleet
from ansible_collections.netpol.fleet.plugins.module_utils.engine.parse import load_policies
from ansible_collections.netpol.fleet.plugins.plugin_utils.kubernetes.snapshot import PolicyScope, take_snapshot
from ansible_collections.netpol.fleet.plugins.plugin_utils.kubernetes.source import (
    ClusterRead,
    merged,
    missing_namespaces,
    policy_scope,
    read_cluster,
    read_vmi_hosts,
    scope_warning,
)

EMPTY = load_fleet({}, {})


@pytest.fixture
def server() -> RecordedServer:
    return RecordedServer()


def inventory_policy(name):
    return load_policies([{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                           "metadata": {"name": name, "namespace": "shop"}, "spec": {"podSelector": {}}}], [])[0][0]


def test_an_unknown_option_is_named_before_anything_is_contacted():
    read = read_cluster({"hots": "https://x"}, {}, EMPTY, ())
    assert read.inputs.errors == ["netpol_kubernetes: unknown option 'hots': known options are kubeconfig, context, "
                                  "host, api_key, username, password, client_cert, client_key, ca_cert, "
                                  "validate_certs, proxy, impersonate_user, impersonate_groups, page_size, timeout, "
                                  "policy_namespaces, policy_label_selectors, vmi_antispoof"]


def test_an_unreachable_api_is_one_error_naming_it():
    read = read_cluster({"host": "https://127.0.0.1:1", "api_key": "x", "timeout": 2}, {}, EMPTY, (), environ={})
    (error,) = read.inputs.errors
    assert error.startswith("netpol_source=kubernetes: cannot reach the Kubernetes API at https://127.0.0.1:1")
    assert read.source == "options (host https://127.0.0.1:1, api_key; or their K8S_AUTH_* variables)"


def test_listing_the_hosts_vmis_run_on_checks_the_options_and_names_an_unreachable_api():
    assert read_vmi_hosts({"hots": "https://x"}, {}, EMPTY)[1][0].startswith("netpol_kubernetes: unknown option 'hots'")
    hosts, (error,) = read_vmi_hosts({"host": "https://127.0.0.1:1", "api_key": "x", "timeout": 2}, {}, EMPTY, environ={})
    assert hosts == [] and error.startswith("netpol_source=kubernetes: cannot reach the Kubernetes API at https://127.0.0.1:1")


def test_a_page_size_that_is_no_number_is_an_error():
    read = read_cluster({"host": "https://127.0.0.1:1", "api_key": "x", "page_size": "many"}, {}, EMPTY, (), environ={})
    assert read.inputs.errors == ["netpol_source=kubernetes: netpol_kubernetes.page_size must be an integer, not 'many'"]


def test_inventory_policies_join_the_clusters_and_one_name_in_both_is_an_error(server):
    mine, clash = inventory_policy("from-files"), inventory_policy("web-ingress")
    found = merged(take_snapshot(server), EMPTY, {}, (mine, clash), ())
    assert [p.key for p in found.policies] == ["shop/from-files", "shop/web-ingress"]
    assert found.errors == ["netpol_policies[0]: shop/web-ingress: metadata.name: duplicate NetworkPolicy name in "
                            "namespace 'shop': also the cluster's kubernetes:shop/web-ingress"]


def test_the_policy_scope_is_read_from_its_options():
    scope, errors = policy_scope({"policy_namespaces": ["shop", "ops"], "policy_label_selectors": ["netpol=on", "!legacy"]})
    assert (scope, errors) == (PolicyScope(("shop", "ops"), "netpol=on,!legacy"), [])
    assert policy_scope({})[0].everything


@pytest.mark.parametrize("options, error", [
    ({"policy_namespaces": "shop"}, "netpol_kubernetes.policy_namespaces must be a list of strings, not 'shop'"),
    ({"policy_namespaces": ["shop", "Shop_1"]}, "netpol_kubernetes.policy_namespaces[1]: invalid namespace name "
                                                "'Shop_1': a lowercase RFC 1123 label must consist of"),
    ({"policy_namespaces": ["shop", "shop"]}, "netpol_kubernetes.policy_namespaces[1]: namespace 'shop' is listed twice"),
    ({"policy_label_selectors": ["app=web", "tier in (a"]}, "netpol_kubernetes.policy_label_selectors[1]: invalid "
                                                            "selector 'tier in (a': position 11: expected ',' or ')'"),
])
def test_a_bad_policy_scope_is_named_before_anything_is_contacted(options, error):
    read = read_cluster(dict(options, host="https://127.0.0.1:1", api_key="x"), {}, EMPTY, (), environ={})
    (found,) = read.inputs.errors
    assert found.startswith(error)
    assert read.source == ""  # nothing was contacted


def test_a_policy_namespace_the_cluster_does_not_have_is_an_error(server):
    scope = PolicyScope(("shop", "shpo"))
    assert missing_namespaces(scope, take_snapshot(server, policy_scope=scope)) == [
        "netpol_kubernetes.policy_namespaces[1]: namespace 'shpo' is not a Namespace of the cluster"]


def test_a_restricted_scope_says_what_is_not_enforced():
    assert scope_warning(PolicyScope(("shop",), "netpol=on")) == (
        "netpol_kubernetes: NetworkPolicies are read only from namespace shop, labelled netpol=on (policy_namespaces, "
        "policy_label_selectors): the cluster's other NetworkPolicies are NOT enforced by this run, and workloads only "
        "they select stay unisolated here")


def test_the_snapshot_is_one_line_for_the_diff_header():
    read = ClusterRead(host="https://10.0.0.1:6443", resource_versions={"Namespace": "12", "NetworkPolicy in shop": "15"})
    assert read.compiled_from == ("the Kubernetes snapshot of https://10.0.0.1:6443 at resourceVersions Namespace 12, "
                                  "NetworkPolicy in shop 15")
