# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iptables-save / iptables-restore text: render desired chains, parse what the kernel prints.

Pure functions, standard library only, Python 3.9: modules import this on managed hosts.
The same text serves IPv4 and IPv6 (ip6tables-save prints the same format).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import Jump, Table

# iptables-restore names the line it choked on; --test and a real apply print the same.
_ERROR_LINE = re.compile(r"(?:Error occurred at line|line):?\s*(\d+)", re.IGNORECASE)
_TARGET = re.compile(r"(?:^|\s)-[jg]\s+(\S+)")
_QUOTED_NAME = re.compile(r"'([^'\s]+)'")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')


@dataclass(frozen=True)
class SavedChain:
    """One chain as iptables-save printed it; policy is "-" for user chains."""

    name: str
    policy: str
    rules: Tuple[str, ...] = ()

    @property
    def builtin(self) -> bool:
        return self.policy != "-"


def jump_spec(jump: Jump) -> str:
    """The rule spec of a jump exactly as iptables-save prints it (match first, then target)."""
    return ("%s -j %s" % (jump.match.strip(), jump.target)).strip()


_COMMENT = re.compile(r'--comment ("(?:[^"\\]|\\.)*"|\S+)')


def rule_comment(spec: str) -> str:
    """The text of a rule's comment match, unquoted; "" when it has none."""
    found = _COMMENT.search(spec)
    if not found:
        return ""
    text = found.group(1)
    return re.sub(r"\\(.)", r"\1", text[1:-1]) if text.startswith('"') else text


def rule_target(spec: str) -> Optional[str]:
    """The chain or target a rule sends packets to (-j or -g), if any."""
    found = _TARGET.search(_QUOTED.sub('""', spec))  # a comment may itself say "-j X"
    return found.group(1) if found else None


def render_restore(table: Table) -> str:
    """Restore text creating the table's chains and jumps, for `iptables-restore --noflush`.

    It assumes none of the chains or jumps exist yet (a fresh host); the netpol_chain module
    computes the minimal text against what the kernel already has instead.
    """
    lines = ["*%s" % table.name]
    lines += [":%s - [0:0]" % chain.name for chain in table.chains]
    lines += ["-A %s %s" % (chain.name, rule) for chain in table.chains for rule in chain.rules]
    for jump in sorted(table.jumps, key=lambda j: j.position):
        lines.append("-I %s %d %s" % (jump.chain, jump.position, jump_spec(jump)))
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def parse_save(text: str) -> Dict[str, Tuple[SavedChain, ...]]:
    """Every table in iptables-save output: table name -> its chains with their rules, in order."""
    tables: Dict[str, Tuple[SavedChain, ...]] = {}
    policies: Dict[str, str] = {}
    rules: Dict[str, List[str]] = {}
    table = None
    for line in text.splitlines():
        if line.startswith("*"):
            table, policies, rules = line[1:].strip(), {}, {}
        elif line.startswith(":") and table:
            name, policy = line[1:].split()[:2]
            policies[name], rules[name] = policy, []
        elif line.startswith("-A ") and table:
            name, spec = (line[3:].split(None, 1) + [""])[:2]
            rules.setdefault(name, []).append(spec.strip())
        elif line.strip() == "COMMIT" and table:
            tables[table] = tuple(
                SavedChain(name, policies.get(name, "-"), tuple(rules[name])) for name in rules
            )
            table = None
    return tables


def error_line(stderr: str) -> Optional[int]:
    """The 1-based input line iptables-restore reported as failing, if it said so."""
    found = _ERROR_LINE.search(stderr)
    return int(found.group(1)) if found else None


def offending_line(stderr: str, text: str) -> Optional[str]:
    """The restore text line iptables-restore choked on, so the user sees the rule, not a number."""
    number = error_line(stderr)
    lines = text.splitlines()
    if number is None or not 1 <= number <= len(lines):
        return None
    if lines[number - 1] == "COMMIT":
        # The kernel refuses at commit time (nftables), so the tool names COMMIT; the rule
        # mentioning what the kernel named (e.g. "Chain 'X' does not exist") is the culprit.
        for name in _QUOTED_NAME.findall(stderr):
            culprit = next((line for line in lines if re.search(r"\s%s(\s|$)" % re.escape(name), line)), None)
            if culprit:
                return culprit
    return lines[number - 1]
