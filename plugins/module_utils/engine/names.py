# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Owned names and kernel-safe text: chains, sets, comments, log prefixes.

Names are a stable hash of what a chain or set *stands for* (its key), never of its
content, so a membership change never renames anything and rules stay untouched.
Standard library only.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re

from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import CHAIN_PREFIX, COMMENT_MAX, SET_PREFIX

# What an owned name stands for, said in the kernel (a chain's first rule, a set's first member):
# short enough for nft's 128-character comments too, so no iptables flavour ever prints it differently.
LABEL_MAX = 128
INGRESS_CHAIN = CHAIN_PREFIX + "INGRESS"
EGRESS_CHAIN = CHAIN_PREFIX + "EGRESS"
NFLOG_PREFIX_MAX = 64
# 80 bits of base32: collisions are out of reach for any fleet. netpol6-<16> plus the swap
# suffix "-t" is 26 characters (sets: 31); NETPOL-I-<16> is 25 (chains: 28).
HASH_LEN = 16

# iptables-save prints a string bare only when it is made of these characters.
_BARE = re.compile(r"^[A-Za-z0-9_-]+$")
# What we let into comments: policy and namespace names never need more.
_UNSAFE = re.compile(r"[^A-Za-z0-9_./:\[\]=, -]")


@functools.lru_cache(maxsize=65536)
def stable_hash(key: str) -> str:
    """Lower-case base32 digest of a key: short, deterministic, valid in every name."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:HASH_LEN]


def set_name(family: int, key: str) -> str:
    """netpol4-<hash> / netpol6-<hash>; leaves room for the swap suffix."""
    return "%s%d-%s" % (SET_PREFIX, family, stable_hash(key))


def workload_chain(direction: str, key: str) -> str:
    """NETPOL-I-<hash> (ingress) / NETPOL-E-<hash> (egress) for one workload."""
    return "%s%s-%s" % (CHAIN_PREFIX, direction[0].upper(), stable_hash(key))


def clamp(text: str, limit: int) -> str:
    """Kernel-safe text within limit characters (the kernel keeps one byte for NUL)."""
    return _UNSAFE.sub("_", text)[:limit]


def comment_match(text: str) -> str:
    """`-m comment --comment ...` exactly as iptables-save prints it."""
    return "-m comment --comment %s" % quote(clamp(text, COMMENT_MAX - 1))


def label_match(text: str) -> str:
    """The comment that says what an owned chain stands for, within LABEL_MAX."""
    return "-m comment --comment %s" % quote(clamp(text, LABEL_MAX - 1))


def set_label(key: str) -> str:
    """The comment of a set's first member: the key its name is the hash of (ipset has no set comment).
    ipset comments are quoted in save text, so only a double quote needs replacing."""
    return key.replace('"', "'")[:LABEL_MAX - 1]


def nflog_prefix(text: str) -> str:
    return quote(clamp(text, NFLOG_PREFIX_MAX - 1))


def quote(value: str) -> str:
    """Quote a string the way iptables-save does (bare only when plainly safe)."""
    if _BARE.match(value):
        return value
    return '"%s"' % re.sub(r'(["\\\'])', r"\\\1", value)
