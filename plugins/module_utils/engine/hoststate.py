# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The desired kernel state of one host: what compile produces and the modules apply.

Standard library only and Python 3.9 compatible: modules import this on managed hosts.
Rules are iptables rule specifications in the exact form iptables-save prints them
(without the leading "-A CHAIN"), so desired and actual state compare as text.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Tuple

# Everything the collection owns carries one of these prefixes; nothing else is touched.
CHAIN_PREFIX = "NETPOL-"
SET_PREFIX = "netpol"
CHAIN_NAME_MAX = 28
SET_NAME_MAX = 31
SET_TEMP_SUFFIX = "-t"  # a set being refilled before its swap; names leave room for it
COMMENT_MAX = 256


@dataclass(frozen=True)
class SetMember:
    """One ipset entry as `ipset save` prints it (e.g. 10.0.0.0/8, 10.1.2.3,tcp:5432)."""

    entry: str
    nomatch: bool = False
    comment: str = ""


@dataclass(frozen=True)
class IpSet:
    name: str
    type: str  # hash:ip, hash:net, hash:ip,port, hash:net,port, hash:net,iface
    family: str  # inet or inet6
    members: Tuple[SetMember, ...] = ()  # sorted by entry
    options: Tuple[Tuple[str, str], ...] = ()  # e.g. (("maxelem", "131072"),)


@dataclass(frozen=True)
class Chain:
    name: str
    rules: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Jump:
    """The one rule in a base chain (INPUT, OUTPUT, FORWARD) that enters our chains.

    `position` is where the jump is inserted. Once there it stays put, even when another owner
    inserts rules above it later (a warning says so): two owners that both move their rule back
    to position 1 would swap places on every run. `enforce_position` moves it back every run.
    """

    chain: str
    target: str
    match: str = ""  # extra match spec before "-j", e.g. "-m physdev --physdev-is-bridged"
    position: int = 1
    enforce_position: bool = False


@dataclass(frozen=True)
class Table:
    family: str  # ipv4 or ipv6
    name: str  # filter, raw, mangle
    chains: Tuple[Chain, ...] = ()
    jumps: Tuple[Jump, ...] = ()


@dataclass(frozen=True)
class HostState:
    """bridges: the Linux bridges whose br_netfilter flags (nf_call_iptables, nf_call_ip6tables)
    must be on, because they carry ports of VMs this host enforces for (bridge mode)."""

    host: str
    sets: Tuple[IpSet, ...] = ()
    tables: Tuple[Table, ...] = ()
    bridges: Tuple[str, ...] = ()

    def to_dict(self) -> Dict[str, Any]:
        """Plain lists and dicts, to travel as module arguments and facts."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "HostState":
        return cls(
            host=data["host"],
            sets=tuple(_ipset(s) for s in data.get("sets", ())),
            tables=tuple(_table(t) for t in data.get("tables", ())),
            bridges=tuple(data.get("bridges", ())),
        )

    def table(self, family: str, name: str = "filter") -> Table:
        for t in self.tables:
            if t.family == family and t.name == name:
                return t
        return Table(family=family, name=name)


def _ipset(d: Dict[str, Any]) -> IpSet:
    return IpSet(
        name=d["name"],
        type=d["type"],
        family=d["family"],
        members=tuple(SetMember(**m) for m in d.get("members", ())),
        options=tuple((k, str(v)) for k, v in d.get("options", ())),
    )


def _table(d: Dict[str, Any]) -> Table:
    return Table(
        family=d["family"],
        name=d["name"],
        chains=tuple(Chain(c["name"], tuple(c.get("rules", ()))) for c in d.get("chains", ())),
        jumps=tuple(Jump(**j) for j in d.get("jumps", ())),
    )
