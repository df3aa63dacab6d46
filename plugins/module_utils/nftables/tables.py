# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nf_tables view of one iptables table, to delete it when it holds nothing but what we leave.

iptables-nft creates a table (and each built-in chain a rule goes into) on the first restore that
names it, and never deletes it again: after our chains are gone, a host that had no `ip filter`
table keeps an empty one. This backend reads the table with `nft -j list table` and deletes it when
it holds nothing once our chains and the jumps into them are gone: no rule, no set or other object,
only built-in chains with policy accept - a table that filters nothing. Standard library only,
Python 3.9.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence

from ansible_collections.netpol.fleet.plugins.module_utils.tools import ToolError, read, run

NFT_FAMILIES = {"ipv4": "ip", "ipv6": "ip6", "bridge": "bridge"}  # hoststate family -> nft family
_HEADERS = ("metainfo", "table")  # what every listing has, also of an empty table


def read_table(module, nft: str, family: str, table: str) -> Optional[List[Dict[str, Any]]]:
    """The table's objects as `nft -j list table` prints them; None when nf_tables has no such table."""
    argv = [nft, "-j", "list", "table", NFT_FAMILIES[family], table]
    rc, out, err = read(module, argv, _json_gaps, check=False)
    if rc != 0:
        if "No such file or directory" in err:
            return None
        raise ToolError(argv, rc, err or out)
    return json.loads(out)["nftables"]


def _json_gaps(out: str) -> str:
    """"" when the listing is a whole nft JSON document; otherwise what it lacks (its output did not
    reach us whole, see tools.read)."""
    try:
        json.loads(out)["nftables"]
    except (ValueError, KeyError, TypeError):
        return "a whole JSON document (%d characters came)" % len(out)
    return ""


def left_empty(objects: Sequence[Dict[str, Any]], prefix: str) -> bool:
    """Whether the table filters nothing once the chains with our prefix and the jumps into them
    are gone: only built-in chains with policy accept, no other rule, set, map or object."""
    for item in objects:
        [(kind, body)] = item.items()
        if kind in _HEADERS:
            continue
        if kind == "chain" and not body["name"].startswith(prefix):
            if "hook" not in body or body.get("policy") != "accept":
                return False
        elif kind == "rule":
            if not (body["chain"].startswith(prefix) or _only_jumps_to(body, prefix)):
                return False
        elif kind != "chain":
            return False
    return True


def _only_jumps_to(rule: Dict[str, Any], prefix: str) -> bool:
    """A rule whose verdict is a jump or goto into one of our chains (our jump from a built-in chain)."""
    targets = [expr[verb]["target"] for expr in rule.get("expr", ()) if isinstance(expr, dict)
               for verb in ("jump", "goto") if verb in expr]
    return bool(targets) and all(target.startswith(prefix) for target in targets)


def delete_script(family: str, table: str) -> str:
    """The nft command that deletes the table. nft has no "delete if empty" (a chain is deleted with
    its rules): the caller reads the table just before and deletes only what left_empty accepted."""
    return "delete table %s %s\n" % (NFT_FAMILIES[family], table)


def delete(module, nft: str, script: str) -> None:
    run(module, [nft, "-f", "-"], data=script)
