# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the explain role: an explanation (and its measurement) as text.

Each filter is documented in the .yml file of its name beside this one."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from ansible.errors import AnsibleFilterError
from ansible_collections.netpol.fleet.plugins.module_utils.verify import explain


def netpol_explain_text(explained: Sequence[Mapping[str, Any]], measured: Optional[Mapping[str, Any]] = None) -> str:
    try:
        records: List[Dict[str, Any]] = [dict(r) for r in explained]
        if measured:
            records = explain.measure(records, measured.get("probes") or [], measured.get("counters") or {})
        return explain.explain_text(records)
    except (KeyError, TypeError, ValueError) as error:
        raise AnsibleFilterError("netpol explain: bad explanation record: %s" % error) from error


class FilterModule:
    def filters(self):
        return {"netpol_explain_text": netpol_explain_text}
