# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`ansible-galaxy collection build` ships collection content only: no venv, no checkout tooling,
no lab or test output, no way back into itself through the collection/ link. The packaging around
it is real: the license text, no placeholder URLs, a linted changelog, an execution environment
that ansible-builder accepts."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
# What a collection tarball may hold at its top (a new entry here is a decision, not an accident).
COLLECTION_CONTENT = {"FILES.json", "MANIFEST.json", "README.md", "LICENSE", "COPYING", "changelogs", "docs",
                      "extensions", "inventories", "meta", "molecule", "playbooks", "plugins", "requirements.txt",
                      "bindep.txt", "roles", "tests"}
BIN = Path(sys.executable).parent
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text())
TARBALL = "netpol-fleet-%s.tar.gz" % GALAXY["version"]


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> Path:
    """The collection tarball, built once for this file's tests."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out), str(REPO)],
                   cwd=out, check=True, capture_output=True)
    return out / TARBALL


def test_built_tarball_holds_collection_content_only(tarball):
    with tarfile.open(tarball) as tar:
        members = tar.getmembers()
    names = [member.name for member in members]
    assert {name.split("/")[0] for name in names} <= COLLECTION_CONTENT
    assert "plugins/connection/netns.py" in names and "roles/lab/tasks/main.yml" in names
    assert not [name for name in names if "__pycache__" in name or name.startswith("tests/output")]
    assert not [member.name for member in members if member.issym()]
    assert {"LICENSE", "bindep.txt", "meta/execution-environment.yml", "changelogs/config.yaml"} <= set(names)


def test_license_is_the_full_gpl3_text():
    text = (REPO / "LICENSE").read_text()
    assert GALAXY["license"] == ["GPL-3.0-or-later"]
    assert text.startswith(" " * 20 + "GNU GENERAL PUBLIC LICENSE\n" + " " * 23 + "Version 3, 29 June 2007")
    assert "END OF TERMS AND CONDITIONS" in text and "How to Apply These Terms to Your New Programs" in text


def test_galaxy_metadata_names_no_placeholder_host():
    """A URL in galaxy.yml is shown on Galaxy and in AWX: a made-up one sends users nowhere (the
    project has no public host yet, so galaxy.yml names none; see the comment there)."""
    urls = {key: GALAXY[key] for key in ("repository", "issues", "documentation", "homepage") if GALAXY.get(key)}
    placeholder = re.compile(r"\.(invalid|example|test|localhost)(/|$)|//(www\.)?example\.(com|org|net)(/|$)")
    assert not {key: url for key, url in urls.items() if placeholder.search(url) or not url.startswith("https://")}


def test_changelog_fragments_pass_antsibull_changelog_lint():
    result = subprocess.run([str(BIN / "antsibull-changelog"), "lint"], cwd=REPO, capture_output=True, text=True,
                            check=False)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    assert list((REPO / "changelogs" / "fragments").glob("*.yml"))


def documented_ee_definition() -> str:
    """The EE definition docs/awx.md gives users: the yaml block of its ansible-builder section."""
    section = (REPO / "docs" / "awx.md").read_text().split("## An execution environment with ansible-builder")[1]
    return re.search(r"```yaml\n(.*?)```", section, re.S).group(1)


def test_ansible_builder_accepts_the_documented_ee_and_writes_its_build_context(tarball, tmp_path):
    (tmp_path / "execution-environment.yml").write_text(documented_ee_definition())
    shutil.copy(tarball, tmp_path / TARBALL)
    result = subprocess.run([str(BIN / "ansible-builder"), "create", "--file", "execution-environment.yml",
                             "--context", "context", "--output-filename", "Containerfile"],
                            cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    context = tmp_path / "context"
    containerfile = (context / "Containerfile").read_text()
    assert 'ARG EE_BASE_IMAGE="registry.access.redhat.com/ubi9/ubi:latest"' in containerfile
    assert 'ARG PYCMD="/usr/bin/python3.12"' in containerfile and "ansible-core==2.19.14" in containerfile
    assert (context / "_build" / "collections" / TARBALL).read_bytes() == tarball.read_bytes()
    requirements = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    assert requirements["collections"] == [{"name": "collections/" + TARBALL, "type": "file"}]


def test_ansible_builder_finds_the_collections_python_and_system_requirements(tarball, tmp_path):
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--force", "--no-deps", "-p",
                    str(tmp_path), str(tarball)], check=True, capture_output=True)
    result = subprocess.run([str(BIN / "ansible-builder"), "introspect", "--sanitize", str(tmp_path)],
                            check=True, capture_output=True, text=True)
    found = yaml.safe_load(result.stdout)
    python = [line.split()[0] for line in found["python"]]
    assert python == [line for line in (REPO / "requirements.txt").read_text().split()
                      if "==" in line and line.split("==")[0] not in ("ansible-core", "PyYAML")]
    assert "openssh-clients [platform:rpm]  # from collection netpol.fleet" in found["system"]
