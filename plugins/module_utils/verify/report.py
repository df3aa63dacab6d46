# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The reachability report's model: one matrix per (source namespace, destination namespace),
rows the source hosts, columns each destination address and port, each cell measured against
expected. The verify role renders it with its Jinja2 template (templates/reachability.html.j2).
Pure Python, standard library only.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

from ansible_collections.netpol.fleet.plugins.module_utils.verify.flows import as_bool, flow_key, natural_key

NO_NAMESPACE = "(no namespace)"
# Cell states, as CSS classes: both known and equal/different, or only one of the two known.
STATES = ("agree-allowed", "agree-denied", "disagree", "measured-allowed", "measured-denied", "unmeasured")
Column = Tuple[str, int, str, str, int]  # dst, family, address, protocol, port


def cell_state(expected: Optional[bool], measured: Optional[bool]) -> str:
    if measured is None:
        return "unmeasured"
    if expected is None:
        return "measured-allowed" if measured else "measured-denied"
    if expected != measured:
        return "disagree"
    return "agree-allowed" if measured else "agree-denied"


def cell_text(flow: Mapping[str, Any], expected: Optional[Mapping[str, Any]], measured: Optional[Mapping[str, Any]]) -> str:
    """What a click on the cell shows: the flow, the simulator's reasons, the probe's outcome."""
    lines = ["%s -> %s %s %s/%s (IPv%s)" % (flow["src"], flow["dst"], flow["address"], flow["protocol"],
                                            flow["port"], flow["family"])]
    if expected is not None:
        lines.append("expected: %s" % ("allowed" if as_bool(expected["reachable"]) else "denied"))
        lines += ["  " + line for line in expected.get("why") or ()]
    else:
        lines.append("expected: no expectation given")
    if measured is not None:
        reachable = as_bool(measured["reachable"])
        detail = measured.get("detail") or ""
        lines.append("measured: %s%s" % ("reachable" if reachable else "blocked", " (%s)" % detail if detail else ""))
    else:
        lines.append("measured: not probed")
    return "\n".join(lines)


def report_model(measured: Iterable[Mapping[str, Any]], expected: Optional[Iterable[Mapping[str, Any]]],
                 namespaces: Mapping[str, Optional[str]]) -> Dict[str, Any]:
    """Sections (namespace pairs) of rows and cells, the counts per state and a summary line."""
    seen = {flow_key(f): f for f in measured}
    wanted = {flow_key(f): f for f in expected} if expected is not None else {}
    flows = {key: seen.get(key) or wanted[key] for key in set(seen) | set(wanted)}
    counts = {state: 0 for state in STATES}
    pairs: Dict[Tuple[str, str], Dict[str, Any]] = {}
    for key, flow in flows.items():
        state = cell_state(as_bool(wanted[key]["reachable"]) if key in wanted else None,
                           as_bool(seen[key]["reachable"]) if key in seen else None)
        counts[state] += 1
        pair = (_namespace(namespaces, flow["src"]), _namespace(namespaces, flow["dst"]))
        section = pairs.setdefault(pair, {"cells": {}, "sources": set(), "columns": set()})
        column: Column = (str(flow["dst"]), int(flow["family"]), key[2], key[3], key[4])
        section["sources"].add(str(flow["src"]))
        section["columns"].add(column)
        section["cells"][(str(flow["src"]), column)] = {
            "state": state, "text": cell_text(flow, wanted.get(key), seen.get(key)),
            "mark": "" if key not in seen else ("\u2713" if as_bool(seen[key]["reachable"]) else "\u2717"),
        }
    sections = [_section(pair, pairs[pair]) for pair in sorted(pairs, key=lambda p: (natural_key(p[0]), natural_key(p[1])))]
    return {"sections": sections, "counts": counts, "flows": len(flows), "compared": expected is not None,
            "summary": summary_line(counts, len(flows), expected is not None)}


def summary_line(counts: Mapping[str, int], flows: int, compared: bool) -> str:
    if not compared:
        return "%d flows measured: %d reachable, %d blocked (no expectation given)" % (
            flows, counts["measured-allowed"], counts["measured-denied"])
    verdict = "measured exactly as expected" if not counts["disagree"] and not counts["unmeasured"] else (
        "%d DISAGREE" % counts["disagree"])
    return "%d flows: %s; %d agree allowed, %d agree denied, %d disagree, %d not measured" % (
        flows, verdict, counts["agree-allowed"], counts["agree-denied"], counts["disagree"], counts["unmeasured"])


def _namespace(namespaces: Mapping[str, Optional[str]], host: Any) -> str:
    return str(namespaces.get(str(host)) or NO_NAMESPACE)


def _section(pair: Tuple[str, str], section: Dict[str, Any]) -> Dict[str, Any]:
    columns = sorted(section["columns"], key=lambda c: (natural_key(c[0]), c[1], c[2], c[3], c[4]))
    sources = sorted(section["sources"], key=natural_key)
    return {
        "src_namespace": pair[0], "dst_namespace": pair[1],
        "destinations": _spans([c[0] for c in columns]),
        "columns": [{"dst": c[0], "family": c[1], "address": c[2], "port": "%s/%s" % (c[3], c[4])} for c in columns],
        "rows": [{"src": src, "cells": [section["cells"].get((src, c)) for c in columns]} for src in sources],
    }


def _spans(names: List[str]) -> List[Dict[str, Any]]:
    """Consecutive equal names as (name, how many columns): the header row above the ports."""
    spans: List[Dict[str, Any]] = []
    for name in names:
        if spans and spans[-1]["name"] == name:
            spans[-1]["span"] += 1
        else:
            spans.append({"name": name, "span": 1})
    return spans
