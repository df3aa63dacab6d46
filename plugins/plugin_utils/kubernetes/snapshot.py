# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One snapshot of what the fleet reads from a cluster: the only Kubernetes API I/O.

Every kind is listed cluster-wide in pages (`limit` + `continue`); a continue token that has
expired (410 Gone) restarts that list from the beginning, so each kind is one consistent list
at one resourceVersion, recorded. Objects stay the API's JSON (camelCase, as in manifests), so
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

# (path, limit, continue token, timeout) -> the decoded JSON page; raises ApiFailure.
PageReader = Callable[[str, int, Optional[str], float], Mapping[str, Any]]


class ApiFailure(Exception):
    """An HTTP error of the API: status, reason and the server's message."""

    def __init__(self, status: int, reason: str, message: str = ""):
        self.status, self.reason, self.message = status, reason, message
        super().__init__("%s %s%s" % (status, reason, ": " + message if message else ""))


class SnapshotError(Exception):
    """The snapshot cannot be taken; the message names verb, resource and what the API said."""


@dataclass(frozen=True)
class Snapshot:
    """Objects by kind (as JSON), each list's resourceVersion, and what was skipped."""

    objects: Mapping[str, Tuple[Mapping[str, Any], ...]]
    resource_versions: Mapping[str, str]
    warnings: Tuple[str, ...] = ()
    pages: Mapping[str, int] = field(default_factory=dict)

    def of(self, resource: Resource) -> Tuple[Mapping[str, Any], ...]:
        return self.objects.get(resource.kind, ())


def take_snapshot(read_page: PageReader, page_size: int = DEFAULT_PAGE_SIZE, timeout: float = DEFAULT_TIMEOUT,
                  resources: Tuple[Resource, ...] = RESOURCES) -> Snapshot:
    """Every resource listed in full; SnapshotError on the first one that cannot be."""
    if page_size < 1:
        raise SnapshotError("page_size must be at least 1, not %d" % page_size)
    objects: Dict[str, Tuple[Mapping[str, Any], ...]] = {}
    versions: Dict[str, str] = {}
    pages: Dict[str, int] = {}
    warnings: List[str] = []
    for resource in resources:
        try:
            items, versions[resource.kind], pages[resource.kind] = list_all(read_page, resource, page_size, timeout)
        except ApiFailure as failure:
            if resource.optional and failure.status == 404:
                warnings.append("the cluster serves no %s (%s): %s skipped" % (
                    resource.rbac_name, resource.api_version, resource.kind + "s"))
                continue
            raise SnapshotError(refusal(resource, failure)) from None
        objects[resource.kind] = tuple(with_kind(resource, item) for item in items)
    return Snapshot(objects=objects, resource_versions=versions, warnings=tuple(warnings), pages=pages)


def list_all(read_page: PageReader, resource: Resource, page_size: int,
             timeout: float) -> Tuple[List[Mapping[str, Any]], str, int]:
    """All items of one list, its resourceVersion and the number of pages read."""
    for _attempt in range(RESTARTS + 1):
        items: List[Mapping[str, Any]] = []
        token: Optional[str] = None
        version, pages = "", 0
        try:
            while True:
                page = read_page(resource.path, page_size, token, timeout)
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


def refusal(resource: Resource, failure: ApiFailure) -> str:
    """What could not be read and why, with the RBAC verb and resource to grant when forbidden."""
    what = "list %s (cluster-wide, %s)" % (resource.rbac_name, resource.path)
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

    def read_page(path: str, limit: int, token: Optional[str], timeout: float) -> Mapping[str, Any]:
        query = [("limit", limit)] + ([("continue", token)] if token else [])
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
