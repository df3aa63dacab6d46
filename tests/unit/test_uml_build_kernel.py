# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""tests/uml/build-kernel.sh checks the UML kernel's final .config against config.fragment: an
option that olddefconfig dropped fails the build, named, instead of a guest test failing later."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT, FRAGMENT = ROOT / "tests" / "uml" / "build-kernel.sh", ROOT / "tests" / "uml" / "config.fragment"


def as_kconfig_writes(fragment: str) -> str:
    """The .config text of a kernel built exactly as the fragment asks (kconfig writes =n as a comment)."""
    return re.sub(r"^(CONFIG_\w+)=n$", r"# \1 is not set", fragment, flags=re.M)


def check(config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), "--check-config", str(config)], capture_output=True, text=True, check=False)


def test_a_configuration_with_every_option_of_the_fragment_passes(tmp_path):
    config = tmp_path / ".config"
    config.write_text("CONFIG_UML=y\n" + as_kconfig_writes(FRAGMENT.read_text()))
    assert check(config).returncode == 0


def test_a_dropped_option_fails_naming_each_one_missing(tmp_path):
    config = tmp_path / ".config"
    text = as_kconfig_writes(FRAGMENT.read_text())
    text = text.replace("CONFIG_NF_CONNTRACK_ZONES=y\n", "# CONFIG_NF_CONNTRACK_ZONES is not set\n")
    text = text.replace("# CONFIG_MODULES is not set\n", "CONFIG_MODULES=y\n")
    config.write_text(text.replace("CONFIG_IP_SET_MAX=256\n", "CONFIG_IP_SET_MAX=64\n"))
    result = check(config)
    assert result.returncode == 1
    assert "lacks what config.fragment requires: CONFIG_NF_CONNTRACK_ZONES=y CONFIG_IP_SET_MAX=256 " \
           "CONFIG_MODULES=n" in result.stderr
