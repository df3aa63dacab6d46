# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place modules run kernel tools (ipset, iptables-restore, ...).

Standard library only, Python 3.9: imported by modules on managed hosts.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

# Tools print in English and in a parseable format only under the C locale.
TOOL_ENV = {"LC_ALL": "C", "LANG": "C"}


class ToolError(Exception):
    """A kernel tool failed; carries its argv, exit code and own message."""

    def __init__(self, argv: Sequence[str], rc: int, stderr: str, stdin: Optional[str] = None):
        self.argv, self.rc, self.stderr, self.stdin = list(argv), rc, stderr.strip(), stdin
        super().__init__("%s failed (rc=%d): %s" % (" ".join(self.argv), rc, self.stderr))


def run(module, argv: Sequence[str], data: Optional[str] = None, check: bool = True) -> Tuple[int, str, str]:
    """Run a tool through module.run_command under the C locale; raise ToolError on failure.

    A tool that cannot be started, or dies before it has read its input (killed, or a restore that
    stops at its first bad line of a text longer than the pipe holds), is a ToolError too: left to
    run_command, it would be a fail_json, which exits the process in the middle of a transaction
    instead of letting it undo the steps already taken."""
    try:
        rc, out, err = module.run_command(
            list(argv), data=data, binary_data=data is not None, environ_update=TOOL_ENV, handle_exceptions=False
        )
    except OSError as e:
        raise ToolError(argv, -1, "could not be run or fed its input: %s" % e, data)
    if check and rc != 0:
        raise ToolError(argv, rc, err or out, data)
    return rc, out, err
