# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One snapshot of what the fleet reads from a cluster: the only Kubernetes API I/O.

Every kind is listed cluster-wide in pages (`limit` + `continue`); a continue token that has
expired (410 Gone) restarts that list from the beginning, so each list is one consistent list
at one resourceVersion, recorded. NetworkPolicies can be listed from named namespaces only (one
list each) and/or by a label selector (a PolicyScope): the policies outside it are not read. Objects stay the API's JSON (camelCase, as in manifests), so
NetworkPolicies go through the same parser as policy files. KubeVirt is optional: without its
API the VMIs are skipped with one warning. Any refusal names the verb and the resource.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple


@dataclass(frozen=True)
class Resource:
    """A listable kind: the plural.group RBAC names it by, and its cluster-wide list path."""

    kind: str
    plural: str
    group: str
    version: str
    optional: bool = False

    @property
    def path(self) -> str:
        prefix = "/api/%s" % self.version if not self.group else "/apis/%s/%s" % (self.group, self.version)
        return "%s/%s" % (prefix, self.plural)

    def namespaced_path(self, namespace: str) -> str:
        prefix, plural = self.path.rsplit("/", 1)
        return "%s/namespaces/%s/%s" % (prefix, namespace, plural)

    @property
    def rbac_name(self) -> str:
        return "%s.%s" % (self.plural, self.group) if self.group else self.plural

    @property
    def api_version(self) -> str:
        return "%s/%s" % (self.group, self.version) if self.group else self.version


NAMESPACES = Resource("Namespace", "namespaces", "", "v1")
NETWORK_POLICIES = Resource("NetworkPolicy", "networkpolicies", "networking.k8s.io", "v1")
PODS = Resource("Pod", "pods", "", "v1")
NODES = Resource("Node", "nodes", "", "v1")
VMIS = Resource("VirtualMachineInstance", "virtualmachineinstances", "kubevirt.io", "v1", optional=True)
RESOURCES = (NAMESPACES, NETWORK_POLICIES, PODS, NODES, VMIS)

DEFAULT_PAGE_SIZE = 500
DEFAULT_TIMEOUT = 30
RESTARTS = 3  # 410 Gone restarts of one list before giving up

# (path, limit, continue token, timeout, label selector) -> the decoded JSON page; raises ApiFailure.
PageReader = Callable[[str, int, Optional[str], float, str], Mapping[str, Any]]


@dataclass(frozen=True)
class PolicyScope:
    """Which NetworkPolicies are read: from every namespace or only those named, all of them or
    only those a label selector (the API's labelSelector) matches."""

    namespaces: Tuple[str, ...] = ()
    label_selector: str = ""

    @property
    def everything(self) -> bool:
        return not self.namespaces and not self.label_selector

    def describe(self) -> str:
        where = "namespace%s %s" % ("s" if len(self.namespaces) > 1 else "", ", ".join(self.namespaces)) \
            if self.namespaces else "every namespace"
        return "%s%s" % (where, ", labelled %s" % self.label_selector if self.label_selector else "")


EVERY_POLICY = PolicyScope()


@dataclass(frozen=True)
class ListRequest:
    """One list to read in full: the key its resourceVersion is recorded under, its path, selector."""

    resource: Resource
    key: str
    path: str
    label_selector: str = ""
    where: str = "cluster-wide"


def list_requests(resource: Resource, scope: PolicyScope = EVERY_POLICY) -> List[ListRequest]:
    """Every kind cluster-wide; NetworkPolicies as the scope says (one list per namespace named)."""
    if resource is not NETWORK_POLICIES:
        return [ListRequest(resource, resource.kind, resource.path)]
    if not scope.namespaces:
        return [ListRequest(resource, resource.kind, resource.path, scope.label_selector)]
    return [ListRequest(resource, "%s in %s" % (resource.kind, namespace), resource.namespaced_path(namespace),
                        scope.label_selector, "namespace %s" % namespace) for namespace in scope.namespaces]


class ApiFailure(Exception):
    """An HTTP error of the API: status, reason and the server's message."""

    def __init__(self, status: int, reason: str, message: str = ""):
        self.status, self.reason, self.message = status, reason, message
        super().__init__("%s %s%s" % (status, reason, ": " + message if message else ""))


class SnapshotError(Exception):
    """The snapshot cannot be taken; the message names verb, resource and what the API said."""


@dataclass(frozen=True)
class Snapshot:
    """Objects by kind (as JSON), each list's resourceVersion (by kind, or "NetworkPolicy in <namespace>"
    for a namespace's list), what was skipped, and which NetworkPolicies were read."""

    objects: Mapping[str, Tuple[Mapping[str, Any], ...]]
    resource_versions: Mapping[str, str]
    warnings: Tuple[str, ...] = ()
    pages: Mapping[str, int] = field(default_factory=dict)
    policy_scope: PolicyScope = EVERY_POLICY

    def of(self, resource: Resource) -> Tuple[Mapping[str, Any], ...]:
        return self.objects.get(resource.kind, ())


def take_snapshot(read_page: PageReader, page_size: int = DEFAULT_PAGE_SIZE, timeout: float = DEFAULT_TIMEOUT,
                  resources: Tuple[Resource, ...] = RESOURCES, policy_scope: PolicyScope = EVERY_POLICY) -> Snapshot:
    """Every resource listed in full; SnapshotError on the first one that cannot be."""
    if page_size < 1:
        raise SnapshotError("page_size must be at least 1, not %d" % page_size)
    objects: Dict[str, Tuple[Mapping[str, Any], ...]] = {}
    versions: Dict[str, str] = {}
    pages: Dict[str, int] = {}
    warnings: List[str] = []
    for resource in resources:
        items: List[Mapping[str, Any]] = []
        try:
            for request in list_requests(resource, policy_scope):
                found, versions[request.key], pages[request.key] = list_all(read_page, request, page_size, timeout)
                items.extend(found)
        except ApiFailure as failure:
            if resource.optional and failure.status == 404:
                warnings.append("the cluster serves no %s (%s): %s skipped" % (
                    resource.rbac_name, resource.api_version, resource.kind + "s"))
                continue
            raise SnapshotError(refusal(request, failure)) from None
        objects[resource.kind] = tuple(with_kind(resource, item) for item in items)
    return Snapshot(objects=objects, resource_versions=versions, warnings=tuple(warnings), pages=pages,
                    policy_scope=policy_scope)


def list_all(read_page: PageReader, request: ListRequest, page_size: int,
             timeout: float) -> Tuple[List[Mapping[str, Any]], str, int]:
    """All items of one list, its resourceVersion and the number of pages read."""
    for _attempt in range(RESTARTS + 1):
        items: List[Mapping[str, Any]] = []
        token: Optional[str] = None
        version, pages = "", 0
        try:
            while True:
                page = read_page(request.path, page_size, token, timeout, request.label_selector)
                pages += 1
                items.extend(page.get("items") or [])
                metadata = page.get("metadata") or {}
                version = version or str(metadata.get("resourceVersion") or "")
                token = metadata.get("continue") or None
                if token is None:
                    return items, version, pages
        except ApiFailure as failure:
            if failure.status != 410 or token is None:
                raise
            # The continue token expired while paging: only a fresh list is consistent.
    raise ApiFailure(410, "Gone", "the list expired %d times while paging; try a larger page_size" % (RESTARTS + 1))


def refusal(request: ListRequest, failure: ApiFailure) -> str:
    """What could not be read and why, with the RBAC verb and resource to grant when forbidden."""
    resource = request.resource
    what = "list %s (%s, %s)" % (resource.rbac_name, request.where, request.path)
    if failure.status == 403:
        return ("the Kubernetes API refused to %s: missing permission: verb 'list' on resource '%s'"
                " (the shipped ClusterRole netpol-fleet-reader grants it): %s"
                % (what, resource.rbac_name, failure.message or failure.reason))
    if failure.status == 401:
        return "the Kubernetes API did not accept the credentials (401 Unauthorized) to %s" % what
    return "cannot %s: %s" % (what, failure)


def with_kind(resource: Resource, item: Mapping[str, Any]) -> Dict[str, Any]:
    """List items carry no kind and apiVersion: put them back, as a manifest has them."""
    return dict(item, apiVersion=resource.api_version, kind=resource.kind)


def client_page_reader(api_client: Any) -> PageReader:
    """A PageReader over a kubernetes.client.ApiClient, raw JSON in and out."""
    from kubernetes.client.exceptions import ApiException  # controller only
    from urllib3.exceptions import HTTPError

    def read_page(path: str, limit: int, token: Optional[str], timeout: float, label_selector: str) -> Mapping[str, Any]:
        query = [("limit", limit)] + ([("continue", token)] if token else [])
        query += [("labelSelector", label_selector)] if label_selector else []
        try:
            response = api_client.call_api(
                path, "GET", query_params=query, header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"], _preload_content=False, _request_timeout=timeout,
                _return_http_data_only=True,
            )
        except ApiException as failure:
            raise ApiFailure(failure.status or 0, failure.reason or "", _server_message(failure.body)) from None
        except (HTTPError, OSError) as failure:
            raise SnapshotError("cannot reach the Kubernetes API at %s: %s"
                                % (api_client.configuration.host, failure)) from None
        return json.loads(response.data)

    return read_page


def _server_message(body: Any) -> str:
    """The message of a Status object, or the body as text."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        return str(json.loads(body).get("message") or body)
    except (TypeError, ValueError, AttributeError):
        return str(body or "")
