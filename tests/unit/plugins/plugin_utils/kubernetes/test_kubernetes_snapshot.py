# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The snapshot reader: paging, 410 restarts, resourceVersions, optional KubeVirt, refusals named."""

from __future__ import annotations

from typing import Any, Mapping, Optional

import pytest

from kubernetes_recorded import RecordedServer

from ansible_collections.netpol.fleet.plugins.plugin_utils.kubernetes.snapshot import (
    NAMESPACES,
    NETWORK_POLICIES,
    PODS,
    VMIS,
    ApiFailure,
    PolicyScope,
    SnapshotError,
    take_snapshot,
)


@pytest.fixture
def server() -> RecordedServer:
    return RecordedServer()


def names(snapshot, resource):
    return [item["metadata"]["name"] for item in snapshot.of(resource)]


def test_every_page_of_every_list_is_read_and_its_resource_version_recorded(server):
    snapshot = take_snapshot(server, page_size=2, timeout=7)
    assert names(snapshot, PODS) == ["client", "web", "job-done", "kube-proxy-x1", "pending"]
    assert names(snapshot, NAMESPACES) == ["default", "kube-system", "shop"]
    assert snapshot.resource_versions == {"Namespace": "81234", "NetworkPolicy": "81240", "Pod": "81250",
                                          "Node": "81260", "VirtualMachineInstance": "81270"}
    assert snapshot.pages["Pod"] == 2
    assert all(limit == 2 and timeout == 7 for _path, limit, _token, timeout, _selector in server.requests)


def test_items_get_back_their_kind_and_api_version(server):
    vmi = take_snapshot(server).of(VMIS)[0]
    assert (vmi["apiVersion"], vmi["kind"]) == ("kubevirt.io/v1", "VirtualMachineInstance")


class Paginator:
    """A server that really splits one list by `limit`, and can expire a continue token once."""

    def __init__(self, count: int, expire_once: bool = False):
        self.items = [{"metadata": {"name": "ns-%03d" % i}} for i in range(count)]
        self.expire_once, self.calls, self.version = expire_once, [], 100

    def __call__(self, path: str, limit: int, token: Optional[str], timeout: float,
                 label_selector: str = "") -> Mapping[str, Any]:
        self.calls.append(token)
        if token is not None and self.expire_once:
            self.expire_once = False
            self.version += 1  # the list moved on while we paged
            raise ApiFailure(410, "Gone", "The provided continue parameter is too old")
        start = int(token or 0)
        metadata = {"resourceVersion": str(self.version)}
        if start + limit < len(self.items):
            metadata["continue"] = str(start + limit)
        return {"metadata": metadata, "items": self.items[start:start + limit]}


def test_a_list_larger_than_the_page_size_is_read_in_pages_of_that_size():
    server = Paginator(7)
    snapshot = take_snapshot(server, page_size=3, resources=(NAMESPACES,))
    assert len(snapshot.of(NAMESPACES)) == 7
    assert server.calls == [None, "3", "6"]


def test_an_expired_continue_token_restarts_the_list_from_the_beginning():
    server = Paginator(5, expire_once=True)
    snapshot = take_snapshot(server, page_size=2, resources=(NAMESPACES,))
    assert names(snapshot, NAMESPACES) == ["ns-%03d" % i for i in range(5)]  # no page twice, none lost
    assert server.calls == [None, "2", None, "2", "4"]
    assert snapshot.resource_versions["Namespace"] == "101"


def test_a_missing_kubevirt_api_skips_vmis_with_one_warning(server):
    server.fail[VMIS.path] = ApiFailure(404, "Not Found", "the server could not find the requested resource")
    snapshot = take_snapshot(server)
    assert snapshot.of(VMIS) == ()
    assert snapshot.warnings == ("the cluster serves no virtualmachineinstances.kubevirt.io (kubevirt.io/v1): "
                                 "VirtualMachineInstances skipped",)


def test_a_forbidden_list_names_the_verb_and_the_resource(server):
    server.fail[VMIS.path] = ApiFailure(403, "Forbidden", 'virtualmachineinstances.kubevirt.io is forbidden: User '
                                        '"system:serviceaccount:x:y" cannot list resource "virtualmachineinstances"')
    with pytest.raises(SnapshotError) as failure:
        take_snapshot(server)
    message = str(failure.value)
    assert "missing permission: verb 'list' on resource 'virtualmachineinstances.kubevirt.io'" in message
    assert "cannot list resource" in message  # the server's own words follow


def test_a_missing_core_api_is_an_error_not_a_skip(server):
    server.fail[PODS.path] = ApiFailure(404, "Not Found")
    with pytest.raises(SnapshotError, match=r"cannot list pods \(cluster-wide, /api/v1/pods\): 404 Not Found"):
        take_snapshot(server)


def test_bad_credentials_say_so(server):
    server.fail[NAMESPACES.path] = ApiFailure(401, "Unauthorized")
    with pytest.raises(SnapshotError, match="did not accept the credentials"):
        take_snapshot(server)


def test_a_page_size_below_one_is_refused(server):
    with pytest.raises(SnapshotError, match="page_size must be at least 1"):
        take_snapshot(server, page_size=0)


def test_policies_of_named_namespaces_are_one_list_each_with_its_own_resource_version(server):
    snapshot = take_snapshot(server, policy_scope=PolicyScope(("shop", "default")))
    policy_lists = [(path, selector) for path, _l, _t, _o, selector in server.requests if "networkpolicies" in path]
    assert policy_lists == [("/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies", ""),
                            ("/apis/networking.k8s.io/v1/namespaces/default/networkpolicies", "")]
    assert names(snapshot, NETWORK_POLICIES) == ["web-ingress"]  # shop's; default has none
    assert {k: v for k, v in snapshot.resource_versions.items() if k.startswith("NetworkPolicy")} == {
        "NetworkPolicy in shop": "81240", "NetworkPolicy in default": "81240"}
    assert "/apis/networking.k8s.io/v1/networkpolicies" not in [r[0] for r in server.requests]


def test_a_label_selector_goes_to_the_policy_lists_only(server):
    take_snapshot(server, policy_scope=PolicyScope(label_selector="netpol=enforced,tier!=test"))
    selectors = {path: selector for path, _l, _t, _o, selector in server.requests}
    assert selectors[NETWORK_POLICIES.path] == "netpol=enforced,tier!=test"
    assert {selectors[r.path] for r in (NAMESPACES, PODS, VMIS)} == {""}  # peers are every object


def test_a_forbidden_namespace_list_names_the_namespace(server):
    path = "/apis/networking.k8s.io/v1/namespaces/ops/networkpolicies"
    server.fail[path] = ApiFailure(403, "Forbidden", "cannot list resource")
    with pytest.raises(SnapshotError) as failure:
        take_snapshot(server, policy_scope=PolicyScope(("shop", "ops")))
    assert ("refused to list networkpolicies.networking.k8s.io (namespace ops, %s): missing permission: verb 'list' "
            "on resource 'networkpolicies.networking.k8s.io'" % path) in str(failure.value)
