# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-bridge br_netfilter flags as one step of a host's transaction (bridge/netfilter.py).

Taken after the chains (once iptables sees a bridge's packets, the chains that judge them are there)
and undone with them: a failure of any later step switches back exactly the flags this step
switched, and the record of which flags are ours goes back to what it was. So a failed run, and the
automatic rollback (whose snapshot keeps the bridges of the record), leave every bridge as it was.
Standard library only, Python 3.9: netpol_host imports this on managed hosts.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from ansible_collections.netpol.fleet.plugins.module_utils.bridge import netfilter
from ansible_collections.netpol.fleet.plugins.module_utils.bridge.netfilter import Sysfs, flags_of, shown


class BridgeFlagsStep:
    """Flags of `wanted` bridges on (those that were 0), recorded flags of other bridges back off; with any
    wanted bridge, net.bridge.bridge-nf-filter-vlan-tagged on too (tagged frames would skip iptables)."""

    label = "bridge flags"

    def __init__(self, module, ipset_bin: str, wanted: Sequence[str], sysfs: Optional[Sysfs] = None):
        self.module, self.ipset_bin, self.sysfs = module, ipset_bin, sysfs or Sysfs()
        self.record = netfilter.read_record(module, ipset_bin)
        netfilter.check_bridges(self.sysfs, wanted)
        wanted = netfilter.with_sysctls(wanted)
        known = sorted(set(wanted) | set(self.record))
        exists = {b: self.sysfs.is_bridge(b) for b in known}
        self.flags = {b: self.sysfs.bridge_flags(b) for b in known if exists[b]}
        self.plan = netfilter.plan(wanted, self.record, self.flags, exists)

    @property
    def changed(self) -> bool:
        return self.plan.changed or self.plan.record != self.record

    def test(self) -> None:
        """Nothing to test: the bridges were checked when planned."""

    def apply(self) -> None:
        netfilter.apply(self.module, self.sysfs, self.ipset_bin, self.plan, self.record)

    def undo(self) -> None:
        """Every flag this step may have switched back to what it found, then the record."""
        for bridge, flag in self.plan.switch_on + self.plan.switch_off:
            if self.sysfs.is_bridge(bridge) and self.sysfs.bridge_flags(bridge)[flag] != self.flags[bridge][flag]:
                self.sysfs.set_flag(bridge, flag, self.flags[bridge][flag])
        netfilter.write_record(self.module, self.ipset_bin, self.record)

    def after(self) -> Dict[str, Dict[str, int]]:
        flags = {b: dict(v) for b, v in self.flags.items()}
        for bridge, flag in self.plan.switch_on:
            flags[bridge][flag] = 1
        for bridge, flag in self.plan.switch_off:
            flags[bridge][flag] = 0
        return flags

    def report(self) -> Dict[str, List[str]]:
        return dict(switched_on=["%s %s" % (shown(b), f) for b, f in self.plan.switch_on],
                    switched_off=["%s %s" % (shown(b), f) for b, f in self.plan.switch_off])

    def commands(self) -> List[str]:
        return ["echo %d > %s" % (value, self.sysfs.flag_path(bridge, flag))
                for value, switched in ((1, self.plan.switch_on), (0, self.plan.switch_off)) for bridge, flag in switched]

    def diff(self) -> List[Dict[str, str]]:
        return [dict(before_header="bridge flags", after_header="bridge flags", before=_lines(self.flags),
                     after=_lines(self.after()))]


def _lines(flags: Dict[str, Dict[str, int]]) -> str:
    return "".join("%s %s=%d\n" % (shown(b), f, v[f]) for b, v in sorted(flags.items()) for f in flags_of(b))
