# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Open a local HTML page in headless Chromium (Debian's `chromium`, installed by `make deps`):
its DOM after scripts ran, and a screenshot. A fresh empty profile and no background network."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, List, Optional

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("chromium is missing (make deps installs Debian's chromium package)")
    return found


def _run(page: Path, *args: str) -> str:
    with tempfile.TemporaryDirectory(prefix="npx-chromium-") as profile:
        result = subprocess.run([chromium(), *FLAGS, "--user-data-dir=%s" % profile, *args, page.resolve().as_uri()],
                                capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, "chromium failed (rc=%d): %s" % (result.returncode, result.stderr[-2000:])
    return result.stdout


def dump_dom(page: Path) -> str:
    return _run(page, "--dump-dom")


def screenshot(page: Path, path: Path, size: str = "1400,2400") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    _run(page, "--screenshot=%s" % path, "--window-size=%s" % size, "--hide-scrollbars")
    assert path.stat().st_size > 0
    return path


class Elements(HTMLParser):
    """Every element of a tag with its attributes and text: a tiny DOM query for tests."""

    def __init__(self, tag: str):
        super().__init__()
        self.tag = tag
        self.found: List[Dict[str, str]] = []
        self._open: Optional[Dict[str, str]] = None

    def handle_starttag(self, tag, attrs):
        if tag == self.tag:
            self._open = dict((k, v or "") for k, v in attrs)
            self._open["#text"] = ""
            self.found.append(self._open)

    def handle_data(self, data):
        if self._open is not None:
            self._open["#text"] += data

    def handle_endtag(self, tag):
        if tag == self.tag:
            self._open = None


def elements(dom: str, tag: str) -> List[Dict[str, str]]:
    parser = Elements(tag)
    parser.feed(dom)
    return parser.found
