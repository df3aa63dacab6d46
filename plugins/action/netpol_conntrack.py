# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run netpol.fleet.netpol_conntrack, the sets of the compiled tables it judges by sent as one file.

In check mode the enforce role asks which connections the compiled state would cut before it is
in the kernel; that state's sets are in the controller's set store, sent here as netpol_host's
action sends them (docs: modules/netpol_conntrack.py).
"""

from __future__ import annotations

from typing import Any, Dict, List

from ansible.errors import AnsibleActionFail

from ansible_collections.netpol.fleet.plugins.action.netpol_host import ActionModule as HostSetsAction
from ansible_collections.netpol.fleet.plugins.action.netpol_host import stored_set


class ActionModule(HostSetsAction):
    MODULE = "netpol.fleet.netpol_conntrack"
    _supports_async = False

    @staticmethod
    def controller_sets(args: Dict[str, Any]) -> List[str]:
        """Only sets named in the store: the module has no set_files or set_content."""
        named = args.pop("sets", None) or {}
        store = args.pop("set_store", None)
        if named and not store:
            raise AnsibleActionFail("netpol_conntrack: sets needs set_store (netpol_compile's set_store)")
        return [text if text.endswith("\n") else text + "\n"
                for text in (stored_set(store, name, digest) for name, digest in sorted(named.items())) if text]
