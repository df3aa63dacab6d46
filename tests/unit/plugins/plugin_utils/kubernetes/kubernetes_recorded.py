# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""API responses in the shape current Kubernetes releases serve (responses/README.md), served page
by page to the snapshot reader as the API server would. (Not a conftest.py: tests/integration's
modules import their own conftest by that name.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from ansible_collections.netpol.fleet.plugins.plugin_utils.kubernetes.snapshot import RESOURCES, ApiFailure

RESPONSES = Path(__file__).parent / "responses"


def recorded_pages() -> Dict[str, List[Mapping[str, Any]]]:
    """List path -> the recorded pages of that list."""
    return {r.path: json.loads((RESPONSES / ("%s.json" % r.plural)).read_text()) for r in RESOURCES}


NAMESPACED = re.compile(r"^(?P<prefix>.*)/namespaces/(?P<namespace>[^/]+)/(?P<plural>[^/]+)$")


class RecordedServer:
    """Serves recorded pages: the first without a continue token, the next for each token given.
    A namespace's list (.../namespaces/NS/plural) is the cluster-wide list's items of NS, in one page.
    Records every request; `fail` maps a path to an ApiFailure to raise instead."""

    def __init__(self, pages: Optional[Dict[str, List[Mapping[str, Any]]]] = None):
        self.pages = pages if pages is not None else recorded_pages()
        self.requests: List[tuple] = []
        self.fail: Dict[str, ApiFailure] = {}

    def __call__(self, path: str, limit: int, token: Optional[str], timeout: float,
                 label_selector: str = "") -> Mapping[str, Any]:
        self.requests.append((path, limit, token, timeout, label_selector))
        if path in self.fail:
            raise self.fail[path]
        namespaced = NAMESPACED.match(path)
        if namespaced and path not in self.pages:
            return self.namespace_page(namespaced.group("prefix") + "/" + namespaced.group("plural"),
                                       namespaced.group("namespace"))
        pages = self.pages[path]
        if token is None:
            return pages[0]
        for index, page in enumerate(pages):
            if page["metadata"].get("continue") == token:
                return pages[index + 1]
        raise ApiFailure(410, "Gone", "The provided continue parameter is too old")

    def namespace_page(self, cluster_path: str, namespace: str) -> Mapping[str, Any]:
        pages = self.pages[cluster_path]
        items = [i for page in pages for i in page["items"] if i["metadata"].get("namespace") == namespace]
        return {"metadata": {"resourceVersion": pages[0]["metadata"]["resourceVersion"]}, "items": items}
