# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`ansible-galaxy collection build` ships collection content only: no venv, no checkout tooling,
no lab or test output, no way back into itself through the collection/ link."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# What a collection tarball may hold at its top (a new entry here is a decision, not an accident).
COLLECTION_CONTENT = {"FILES.json", "MANIFEST.json", "README.md", "LICENSE", "COPYING", "changelogs", "docs",
                      "extensions", "inventories", "meta", "molecule", "playbooks", "plugins", "requirements.txt",
                      "roles", "tests"}


def test_built_tarball_holds_collection_content_only(tmp_path):
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    subprocess.run([str(galaxy), "collection", "build", "--output-path", str(tmp_path), str(REPO)],
                   cwd=tmp_path, check=True, capture_output=True)
    [tarball] = tmp_path.glob("netpol-fleet-*.tar.gz")
    with tarfile.open(tarball) as tar:
        members = tar.getmembers()
    names = [member.name for member in members]
    assert {name.split("/")[0] for name in names} <= COLLECTION_CONTENT
    assert "plugins/connection/netns.py" in names and "roles/lab/tasks/main.yml" in names
    assert not [name for name in names if "__pycache__" in name or name.startswith("tests/output")]
    assert not [member.name for member in members if member.issym()]
