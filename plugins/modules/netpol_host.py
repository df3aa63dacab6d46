#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: netpol_host
short_description: Apply a host's whole owned firewall state (ipsets, iptables, ip6tables, ebtables) as one transaction
version_added: 0.2.0
description:
  - Makes everything the collection owns on one host exactly the desired state, in one invocation - the
    sets, and the owned chains and jumps of every table of both IP families and of the bridge family
    (ebtables, for the anti-spoofing of bridged VM ports) - or leaves the host wholly on its previous state.
  - Reads everything first (C(ipset list -t), C(ipset save) when a set of ours exists, one C(iptables-save), one
    C(ip6tables-save) and, on a host that has it, one C(ebtables-save) of all tables), validates everything
    (names, rules, every set a rule uses, every set's entries) and plans every step; a no-op ends there, without a single kernel write.
  - Then creates the new sets (complete, under their own names; no rule references them yet, so no packet
    sees them), runs every dry check (C(iptables-restore --test) and C(ip6tables-restore --test) of every table
    that changes, which need those sets to exist; for ebtables, which has no C(--test), a restore into a scratch
    network namespace read back there) before any change traffic can see, and applies in the order that never
    opens a window - changed sets (built complete, then swapped in), the layer-3 chains and jumps (IPv4, then
    IPv6), the layer-2 chains and jumps (ebtables), one atomic C(--noflush) restore per table in which its chains
    come before the jumps into them, then the stale sets (and, with O(delete_empty_tables), the emptied tables). On any failure it undoes the steps
    already taken, last first, sets included (the sets a failed run created are destroyed again).
  - The writes run in a child process of their own session that holds a per-namespace lock, so a module
    process killed half way (a timeout, an OOM kill) does not stop the transaction in the middle; it ends
    on the new state, or on the old one if a step fails.
  - Every table the host owns chains in is part of the state; an owned table left out of O(tables) is emptied.
    Foreign chains, rules and sets are never mentioned in any restore text, so they stay byte-identical.
  - With O(save_to) it only writes the owned state to a file; with O(restore_from) (and O(delay)) it puts a
    saved owned state back, which is how the enforce role's automatic rollback restores only what the
    collection owns.
author:
  - netpol.fleet contributors (@netpol-fleet)
requirements:
  - ipset 7 or later, iptables and ip6tables (nf_tables or legacy) with their save and restore tools.
  - For bridge tables, ebtables-nft (the nf_tables backend; legacy ebtables is refused) and C(unshare) (util-linux).
options:
  tables:
    description:
      - The owned chains and jumps of each table, as C(netpol.fleet.netpol_compile) returns them per host (a
        C(hoststate.Table) each). Owned chains and jumps not listed are removed.
    type: list
    elements: dict
    default: []
    suboptions:
      family:
        description: V(ipv4) (iptables), V(ipv6) (ip6tables) or V(bridge) (ebtables); another family stops the run
          before any read.
        type: str
        required: true
      name:
        description: The table, V(filter), V(raw), V(nat) or V(mangle); V(filter) or V(nat) for V(bridge).
        type: str
        required: true
      chains:
        description: The owned chains, each C({name, rules}) with rules in iptables-save (or ebtables-save) form,
          without C(-A CHAIN).
        type: list
        elements: dict
        default: []
      jumps:
        description: The jumps into the owned chains, each C({chain, target, match, position}).
        type: list
        elements: dict
        default: []
  sets:
    description:
      - The host's sets as C(netpol.fleet.netpol_compile) names them, set name to the digest of its content
        (C(hosts[HOST].sets)), with O(set_store).
      - Handled by the action plugin, on the controller; the sets' contents travel to the host as one file.
    type: dict
  set_store:
    description:
      - The controller directory in which C(netpol.fleet.netpol_compile) wrote each distinct set once, as
        C(DIGEST.ipset) (its result's C(set_store)). Required with O(sets).
    type: path
  set_files:
    description:
      - Files on the controller holding sets in C(ipset save) form; handled by the action plugin, like O(sets).
    type: list
    elements: path
  set_content:
    description:
      - 'The sets as one text in C(ipset save) form: C(create NAME TYPE [family F] [OPTIONS]) then
        C(add NAME ENTRY [nomatch] [comment "TEXT"]) lines. The action plugin sends it as a file.'
    type: str
  set_src:
    description:
      - Files on the managed host holding the sets in C(ipset save) form (what the action plugin passes).
      - The sets of O(sets), O(set_files), O(set_content) and O(set_src) together are the host's complete
        set list; our sets not in it (names starting with one of O(set_prefixes)) are destroyed after the
        chains stopped using them, unless a foreign rule or set still references them (then kept, with a warning).
    type: list
    elements: path
  prefix:
    description: The name prefix of owned chains.
    type: str
    default: NETPOL-
  set_prefixes:
    description: The name prefixes of owned sets.
    type: list
    elements: str
    default: [netpol4-, netpol6-]
  bridges:
    description:
      - Bridge mode. The bridges whose per-bridge br_netfilter flags (C(nf_call_iptables), C(nf_call_ip6tables))
        must be on, switched on after the chains and before the stale sets go, as one step of the transaction;
        a later failure switches back exactly the flags this run switched. Flags the collection switched on
        earlier (recorded in the ipset C(netpol-bridges)) of bridges no longer listed go back off
        (M(netpol.fleet.netpol_bridge) documents the record).
      - Left out (the default), no flag is read or changed.
    type: list
    elements: str
  save_to:
    description:
      - Write the owned state (chains, jumps with their positions, sets with their members, the bridges whose flags the collection
        switched on) as JSON to this
        file on the host, change nothing, and return. Used to arm the enforce role's rollback.
    type: path
  restore_from:
    description:
      - Put back an owned state that O(save_to) wrote, as one transaction. Foreign rules, chains and sets made
        since stay as they are.
    type: path
  delay:
    description:
      - With O(restore_from), wait this many seconds first, and restore only if the file O(restore_from) still
        exists then (deleting it disarms the restore). The file is renamed to C(FILE.rolled-back) once restored.
      - Meant for C(async) with C(poll=0), as the enforce role's rollback timer.
    type: int
    default: 0
  delete_empty_tables:
    description:
      - Delete, last, each table in which the owned chains were and which then holds nothing at all (no foreign
        rule, chain or set; built-in chains with policy accept only). iptables-nft and ebtables-nft create a table
        on the first restore that names it and never delete it; the remove role sets this so a host that had no
        firewall has none afterwards.
      - The table is read again with C(nft -j list table) just before it is deleted. Needs C(nft); without it the
        empty tables stay and the task warns.
    type: bool
    default: false
  lock_file:
    description:
      - The lock every transaction on this network namespace holds from its first read to its last write.
        Default C(/run/netpol-fleet/transaction-INODE.lock), INODE naming the namespace.
    type: path
  lock_timeout:
    description: Seconds to wait for another transaction to finish before failing (nothing is changed).
    type: int
    default: 120
  compiled_from:
    description:
      - Where the desired state was compiled from, shown as the first line of the diff when anything changes
        (the enforce role gives the Kubernetes snapshot - API host and each list's resourceVersion - with
        C(netpol_source=kubernetes)). Changes nothing else.
    type: str
attributes:
  action:
    support: full
    description: An action plugin of the same name sends the sets' contents to the host as one file.
  check_mode:
    support: full
    description: Reads the kernel and returns every change and restore text without applying anything.
  diff_mode:
    support: full
    description: Shows each chain and each set that changes, before and after, under O(compiled_from) when given.
notes:
  - The enforce role runs this module once per host, the remove role too (no tables, no sets,
    O(delete_empty_tables)); the standalone M(netpol.fleet.ipset), M(netpol.fleet.netpol_chain) and
    M(netpol.fleet.ebtables) modules stay for users who manage kernel state themselves.
  - docs/module_netpol_host.md describes the transaction, its guarantees as tested, and how a backend plugs in.
seealso:
  - module: netpol.fleet.netpol_compile
  - module: netpol.fleet.ipset
  - module: netpol.fleet.netpol_chain
  - module: netpol.fleet.ebtables
"""

EXAMPLES = r"""
- name: Compile once for the fleet
  netpol.fleet.netpol_compile:
    policy_paths: [policies/]
  run_once: true
  register: netpol_compiled

- name: Apply each host's whole state as one transaction
  netpol.fleet.netpol_host:
    tables: "{{ netpol_compiled.hosts[inventory_hostname].tables }}"
    sets: "{{ netpol_compiled.hosts[inventory_hostname].sets }}"
    set_store: "{{ netpol_compiled.set_store }}"

- name: Own exactly one chain in the IPv4 filter table and one set, nothing else
  netpol.fleet.netpol_host:
    set_content: |
      create netpol4-admins hash:net family inet maxelem 65536
      add netpol4-admins 10.10.0.0/24
    tables:
      - family: ipv4
        name: filter
        chains:
          - name: NETPOL-ADMIN
            rules: ["-m set --match-set netpol4-admins src -j ACCEPT"]
        jumps:
          - {chain: INPUT, target: NETPOL-ADMIN, match: "", position: 1}

- name: Remove everything the collection owns on the host, and the tables that leaves empty
  netpol.fleet.netpol_host:
    tables: []
    delete_empty_tables: true

- name: Keep the owned state, then put it back in 120 s unless the file is deleted before
  netpol.fleet.netpol_host:
    save_to: /run/netpol-rollback/owned.json
- name: The timer
  netpol.fleet.netpol_host:
    restore_from: /run/netpol-rollback/owned.json
    delay: 120
  async: 180
  poll: 0
"""

RETURN = r"""
sets:
  description: Per set created, changed or destroyed (or to be, in check mode), its entries added and removed.
  returned: always
  type: dict
  sample: {"netpol4-3f2a": {"added": ["10.0.0.5"], "removed": [], "created": true, "destroyed": false}}
kept_referenced:
  description: Stale sets of ours kept because a foreign rule or set still references them.
  returned: always
  type: list
  elements: str
tables:
  description: Per table that changes (C(FAMILY TABLE)), the chains created, updated, removed and the jumps moved.
  returned: always
  type: dict
  sample: {"ipv4 filter": {"created": ["NETPOL-INGRESS"], "updated": [], "removed": [],
           "jumps_added": ["-I INPUT 1 -j NETPOL-INGRESS"], "jumps_removed": []}}
tables_deleted:
  description: Tables deleted (in check mode, to be deleted) by O(delete_empty_tables), as C(FAMILY TABLE).
  returned: always
  type: list
  elements: str
  sample: ["ipv4 filter", "bridge nat"]
commands:
  description: Per step that changes, its C(ipset restore) lines or restore text, in apply order.
  returned: in check mode or with -vv, when something changes
  type: dict
bridge_flags:
  description: With O(bridges) (or a restored state that had bridges), the flags switched on and back off,
    each C(BRIDGE FLAG) (in check mode, those that would be).
  returned: always
  type: dict
  sample: {"switched_on": ["br-vlan10 nf_call_iptables"], "switched_off": []}
rolled_back:
  description: With O(restore_from), whether the saved state was put back (false when disarmed in time).
  returned: with O(restore_from)
  type: bool
"""

import json
import os
import time
from typing import Any, Dict, List, Optional

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import CHAIN_PREFIX, HostState
from ansible_collections.netpol.fleet.plugins.module_utils.ipset.sets import PlanError, sets_from_text
from ansible_collections.netpol.fleet.plugins.module_utils.transaction import detach
from ansible_collections.netpol.fleet.plugins.module_utils.transaction.host import (
    FAILURES,
    Desired,
    TransactionError,
    desired_from_snapshot,
    dump,
    prepare,
    snapshot,
)

TABLE_SPEC = dict(
    family=dict(type="str", required=True),
    name=dict(type="str", required=True),
    chains=dict(type="list", elements="dict", default=[]),
    jumps=dict(type="list", elements="dict", default=[]),
)
ARGUMENT_SPEC = dict(
    tables=dict(type="list", elements="dict", default=[], options=TABLE_SPEC),
    sets=dict(type="dict"),
    set_store=dict(type="path"),
    set_files=dict(type="list", elements="path"),
    set_content=dict(type="str"),
    set_src=dict(type="list", elements="path"),
    prefix=dict(type="str", default=CHAIN_PREFIX),
    set_prefixes=dict(type="list", elements="str", default=["netpol4-", "netpol6-"]),
    bridges=dict(type="list", elements="str"),
    save_to=dict(type="path"),
    restore_from=dict(type="path"),
    delay=dict(type="int", default=0),
    delete_empty_tables=dict(type="bool", default=False),
    lock_file=dict(type="path"),
    lock_timeout=dict(type="int", default=120),
    compiled_from=dict(type="str"),
)
CONTROLLER_SIDE = ("sets", "set_store", "set_files")  # the action plugin turns these into set_src


def desired(params: Dict[str, Any]) -> Desired:
    texts = [read_text(path) for path in params["set_src"] or ()]
    if params["set_content"]:
        texts.append(params["set_content"])
    try:
        tables = HostState.from_dict({"host": "", "tables": params["tables"]}).tables
    except (KeyError, TypeError) as e:
        raise TransactionError("tables: %s: each chain is {name, rules}, each jump {chain, target, match, position}" % e)
    return Desired(sets_from_text("".join(t if t.endswith("\n") or not t else t + "\n" for t in texts)), tables,
                   params["bridges"])


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as text:
            return text.read()
    except (OSError, UnicodeError) as e:
        raise PlanError("set_src %s cannot be read: %s" % (path, e))


def converge(module, want: Desired) -> Dict[str, Any]:
    """Plan, then (unless in check mode) test everything and apply it in a detached child."""
    p = module.params
    transaction = prepare(module, ipset_bin(module), want, p["prefix"], tuple(p["set_prefixes"]),
                          p["delete_empty_tables"])
    for warning in transaction.warnings:
        module.warn(warning)
    result = transaction.report()
    if transaction.changed and (module.check_mode or module._verbosity >= 2):
        result["commands"] = transaction.commands()
    if module._diff:
        result["diff"] = diff_under(transaction.diff(), p["compiled_from"])
    if transaction.changed and not module.check_mode:
        error = detach.run_detached(lambda: _run(transaction))
        if error:
            raise TransactionError(error)
    return result


def diff_under(entries: List[Dict[str, str]], compiled_from: Optional[str]) -> List[Dict[str, str]]:
    """The diff, headed by the line that says what the desired state was compiled from."""
    if not entries or not compiled_from:
        return entries
    return [{"prepared": "desired state compiled from %s" % compiled_from}] + entries


def _run(transaction) -> None:
    try:
        transaction.run()
    except TransactionError as e:
        return str(e)
    return None


def ipset_bin(module) -> str:
    return module.get_bin_path("ipset", required=True)


def save(module) -> Dict[str, Any]:
    p = module.params
    data = snapshot(module, ipset_bin(module), p["prefix"], tuple(p["set_prefixes"]))
    write_file(p["save_to"], dump(data))
    return dict(changed=False, saved=p["save_to"])


def write_file(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    partial = path + ".partial"
    with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(partial, path)  # a reader sees the old file or the whole new one


def restore(module) -> Dict[str, Any]:
    """Wait out the delay; restore the saved owned state unless its file was deleted meanwhile."""
    path = module.params["restore_from"]
    deadline = time.monotonic() + max(0, module.params["delay"])
    while time.monotonic() < deadline and os.path.exists(path):
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    if not os.path.exists(path):
        return dict(changed=False, rolled_back=False, msg="disarmed: %s was removed" % path)
    try:
        with open(path, encoding="utf-8") as saved:
            data = json.load(saved)
    except (OSError, ValueError) as e:
        raise TransactionError("restore_from %s cannot be read: %s" % (path, e))
    result = locked(module, lambda m: converge(m, desired_from_snapshot(data)))
    if not module.check_mode:
        os.replace(path, path + ".rolled-back")
    return dict(result, rolled_back=True)


def locked(module, work):
    """work(module) under the namespace's transaction lock (not in check mode: it only reads)."""
    if module.check_mode and not module.params["save_to"]:
        return work(module)
    lock = detach.take_lock(module.params["lock_file"] or detach.default_lock_file(), module.params["lock_timeout"])
    try:
        return work(module)
    finally:
        os.close(lock)


def invocation(params: Dict[str, Any]) -> Dict[str, Any]:
    """The arguments as reported back, large texts by their size."""
    summary = dict(params)
    if params.get("set_content"):
        summary["set_content"] = "(%d lines)" % params["set_content"].count("\n")
    summary["tables"] = ["%s %s (%d chains)" % (t["family"], t["name"], len(t["chains"])) for t in params["tables"]]
    return dict(module_args=summary)


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=[("save_to", "restore_from")] + [
            (mode, other) for mode in ("save_to", "restore_from")
            for other in ("tables", "sets", "set_files", "set_content", "set_src", "bridges")],
        required_by={"sets": "set_store"},
        supports_check_mode=True,
    )
    p = module.params
    given = [k for k in CONTROLLER_SIDE if p[k] is not None]
    if given:
        module.fail_json(msg="%s: read on the controller by the netpol_host action plugin; pass set_src on the "
                         "host instead" % ", ".join(given))
    try:
        if p["save_to"]:
            result = locked(module, save)
        elif p["restore_from"]:
            result = restore(module)
        else:
            result = locked(module, lambda m: converge(m, desired(p)))
    except FAILURES + (TransactionError, detach.LockTimeout) as e:
        module.fail_json(msg=str(e), invocation=invocation(p))
    module.exit_json(invocation=invocation(p), **result)


if __name__ == "__main__":
    main()
