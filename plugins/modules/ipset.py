#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ipset
short_description: Manage ipsets atomically and idempotently, one set or many in one restore
version_added: 0.1.0
description:
  - Makes one ipset (O(name)) or many (O(sets)) exactly as described, with their members and create options,
    and optionally destroys the sets with a name prefix that are no longer wanted (O(purge_prefix)).
  - Reads the kernel once (C(ipset list -t) and C(ipset save)), compares sets normalised (members as sets of
    entries in the form C(ipset save) prints them, options that matter), and writes nothing when nothing differs.
  - All changes go through one C(ipset restore) call. A changed set is first filled completely under a
    temporary name (the set name plus C(-t)) and then swapped in, after every temporary set is filled, so
    no packet ever sees a half-filled set. A new set is created and filled under its own name (no rule can
    reference a set before it exists). If the kernel rejects a line, the temporary and new sets of the
    call are destroyed again and the live sets stay as they were; temporary sets left by a killed run are
    destroyed by the next run, and a new set it left partly filled is completed by the next run.
  - A set whose type or family changes cannot be swapped. When no iptables rule or C(list:set) references
    it, it is destroyed and recreated in the same restore; when something references it the module fails
    before changing anything, naming the set (give a set of a new type a new name instead).
author:
  - netpol.fleet contributors (@netpol-fleet)
requirements:
  - ipset 7 or later (C(ipset save), C(ipset restore), C(ipset list -t)).
options:
  name:
    description:
      - The one set to manage. Letters, digits and C(_.:+-), at most 29 characters (the kernel allows 31,
        and C(-t) is appended to build the new content before the swap). Names ending in C(-t) are reserved.
      - Mutually exclusive with O(sets).
    type: str
  type:
    description: The set type of O(name).
    type: str
    choices: ["hash:ip", "hash:net", "hash:ip,port", "hash:net,port", "hash:net,iface"]
    default: hash:net
  family:
    description: The address family of O(name).
    type: str
    choices: [inet, inet6]
    default: inet
  members:
    description:
      - The complete member list of O(name); members not listed are removed.
      - Each member is an entry string (for example V(10.0.0.0/8), V(fd00::/64), V(10.1.2.3,tcp:5432),
        V(10.0.0.0/8,udp:53), V(10.0.0.0/8,eth0), V(10.0.0.0/8,physdev:vnet1)) or a dict with the keys
        C(entry), C(nomatch) (bool, C(hash:net*) types only) and C(comment) (at most 255 bytes, no double quote).
      - 'A string may carry the flags after the entry, as C(ipset save) prints them:
        V(10.66.0.0/16 nomatch comment "except: quarantine") equals the dict
        C({entry: 10.66.0.0/16, nomatch: true, comment: "except: quarantine"}). This compact form is the
        cheaper one to pass for large sets (one value per member instead of a dict of three).'
      - 'An invalid member fails the task before the kernel is read, naming the set and the index of the
        member, for example C(set netpol4-db: members[3]: ''10.0.0.300'' is not an IP address or CIDR).'
      - Entries are normalised as ipset prints them (host bits cleared, C(/32) and C(/128) dropped, IPv6
        compressed, protocol C(tcp) added to a bare port, service names resolved). Ranges, and networks in
        C(hash:ip) sets, are refused because ipset would expand them into many entries.
      - A C(/0) cannot be stored in a hash set; use the two halves (V(0.0.0.0/1) and V(128.0.0.0/1)).
    type: list
    elements: raw
    default: []
  options:
    description:
      - Create options of O(name), as a dict or as a list of C([name, value]) pairs (the form of
        C(HostState.to_dict())).
      - V(maxelem), V(timeout) and V(hashsize) take numbers; V(counters), V(comment) and V(skbinfo) are flags.
      - V(maxelem) defaults to 65536 and is raised automatically to the next power of two when there are more
        members. V(comment) is turned on automatically when a member has a comment.
      - V(hashsize) is only a sizing hint at creation (the kernel grows the hash itself), so it never makes a
        set differ. A difference in any other option rebuilds the set through a swap.
    type: raw
  state:
    description: Whether O(name) should exist. An absent set that is still referenced makes the task fail.
    type: str
    choices: [present, absent]
    default: present
  sets:
    description:
      - Many sets at once, applied in a single C(ipset restore). Mutually exclusive with O(name).
      - The sets of a C(HostState) can be passed as they are.
    type: list
    elements: dict
    suboptions:
      name:
        description: As O(name).
        type: str
        required: true
      type:
        description: As O(type).
        type: str
        choices: ["hash:ip", "hash:net", "hash:ip,port", "hash:net,port", "hash:net,iface"]
        default: hash:net
      family:
        description: As O(family).
        type: str
        choices: [inet, inet6]
        default: inet
      members:
        description: As O(members).
        type: list
        elements: raw
        default: []
      options:
        description: As O(options).
        type: raw
      state:
        description: As O(state).
        type: str
        choices: [present, absent]
        default: present
  content:
    description:
      - 'Many sets at once as one text, in the form C(ipset save) prints and C(ipset restore) reads: per set a
        C(create NAME TYPE [family FAMILY] [OPTIONS]) line, then one C(add NAME ENTRY [nomatch] [comment "TEXT"])
        line per member. Blank lines and lines starting with C(#) are skipped. The output of C(ipset save) can
        be passed as it is (its C(bucketsize) and C(initval) are chosen by the kernel and ignored, like
        counters and timeouts of members).'
      - Means the same as O(sets) with every set present, and is validated the same way; an error names the
        set and the line.
      - 'The cheap way to pass large sets: Ansible carries one string instead of one value per member. (The
        C(netpol.fleet.enforce) role applies sets with M(netpol.fleet.netpol_host), which reads the sets of each host
        from the set store of M(netpol.fleet.netpol_compile) in this same form.)'
      - The action plugin sends the text to the host as a file in the task's temporary directory (removed
        afterwards), not inside the module's arguments, and the module reads it there as O(src).
      - Mutually exclusive with O(name), O(sets) and O(src).
    type: str
  src:
    description:
      - A file on the managed host holding the sets as O(content) does, for example a file written by
        C(ipset save > /etc/iptables/ipsets) that the host restores at boot.
      - Mutually exclusive with O(name), O(sets) and O(content).
    type: path
  purge_prefix:
    description:
      - Destroy every set whose name starts with this prefix (or with one of these prefixes) and that is
        not listed in O(name), O(sets), O(content) or O(src). Use prefixes specific enough not to match sets
        of others (V(netpol4-) and V(netpol6-) rather than V(netpol), which would also match C(netpolitics)).
      - A set that iptables rules (or a C(list:set)) still reference is not destroyed; it is reported in
        RV(kept_referenced) with a warning. Run the purge after the chains stopped using the sets.
      - Empty strings are ignored; an empty list purges nothing.
    type: list
    elements: str
  released_chain_prefix:
    description:
      - Check mode only. In a check run, references that iptables/ip6tables rules of the chains whose
        names start with this prefix hold on a set do not keep it from O(purge_prefix). A task before
        this one removes those chains in the real run, but changed nothing in the check run. The
        C(netpol.fleet.remove) role passes V(NETPOL-), so C(--check --diff) shows exactly the sets
        the real run destroys.
      - Outside check mode the kernel's own reference counts decide, and the option reads nothing.
      - Rules are read with C(iptables-save) and C(ip6tables-save) (every table); references from any
        other rule still keep a set.
    type: str
  keep:
    description:
      - Names of sets that O(purge_prefix) must not destroy, whatever their members. With O(keep) a purge
        needs neither O(sets) nor the members again, so a purge after the chains does not carry every member
        of a large host state a second time; the kept sets' members are not even read.
      - Requires O(purge_prefix); mutually exclusive with O(name), O(sets), O(content) and O(src).
    type: list
    elements: str
attributes:
  action:
    support: full
    description: An action plugin of the same name sends O(content) to the host as a file; the rest runs on the host.
  check_mode:
    support: full
    description: Reads the kernel and returns the changes and the restore script without applying them.
  diff_mode:
    support: full
    description: Shows, per changed set, its header and one line per member removed or added.
notes:
  - Sets are per network namespace; the module manages the namespace it runs in.
  - Per-member timeouts, packet counters and the kernel-chosen C(bucketsize) and C(initval) are not compared.
  - The C(invocation) reported back gives each member list (and O(content)) as its length, not the members,
    so a large set is not carried back to the controller once more.
seealso:
  - module: netpol.fleet.netpol_chain
  - name: ipset(8)
    description: Set types, entry syntax and the restore format.
    link: https://ipset.netfilter.org/ipset.man.html
"""

EXAMPLES = r"""
- name: The database tier's clients, minus one subnet
  netpol.fleet.ipset:
    name: netpol4-db-clients
    type: hash:net
    members:
      - 10.0.0.0/8
      - entry: 10.66.0.0/16
        nomatch: true
        comment: "except: quarantine"

- name: The same, members in the compact form (the entry and its flags as ipset save prints them)
  netpol.fleet.ipset:
    name: netpol4-db-clients
    type: hash:net
    members:
      - 10.0.0.0/8
      - '10.66.0.0/16 nomatch comment "except: quarantine"'

- name: An IPv6 set with a larger limit
  netpol.fleet.ipset:
    name: netpol6-web
    family: inet6
    members: [fd00:10::/64, fd00:20::5]
    options:
      maxelem: 262144

- name: All sets of a compiled host state in one restore, then drop the ones nothing uses any more
  netpol.fleet.ipset:
    sets: "{{ netpol_host_state.sets }}"
    purge_prefix: [netpol4-, netpol6-]

- name: A set that netpol_compile stored, as one text in ipset save form (cheapest for large sets)
  netpol.fleet.ipset:
    content: "{{ lookup('ansible.builtin.file', netpol_compiled.set_store ~ '/' ~ digest ~ '.ipset') }}"
  vars:
    digest: "{{ netpol_compiled.hosts[inventory_hostname].sets['netpol4-web'] }}"

- name: Sets kept in a file in ipset save form on the controller, e.g. saved from another host
  netpol.fleet.ipset:
    content: "{{ lookup('ansible.builtin.file', 'files/edge-sets.ipset') }}"

- name: The host's own persisted sets file (as ipset save wrote it), made live
  netpol.fleet.ipset:
    src: /etc/iptables/ipsets

- name: The same purge without passing the members again
  netpol.fleet.ipset:
    purge_prefix: [netpol4-, netpol6-]
    keep: "{{ netpol_host_state.sets | map(attribute='name') | list }}"

- name: Remove one set
  netpol.fleet.ipset:
    name: netpol4-old
    state: absent
"""

RETURN = r"""
sets:
  description: Per set changed (or to be changed in check mode), the entries added and removed and whether it was created or destroyed.
  returned: always
  type: dict
  sample:
    netpol4-db-clients:
      added: ["10.0.0.5"]
      removed: ["10.0.0.4"]
      created: false
      destroyed: false
kept_referenced:
  description: Sets matching O(purge_prefix) that were not destroyed because something still references them.
  returned: always
  type: list
  elements: str
  sample: ["netpol4-old"]
commands:
  description: The C(ipset restore) script, one line per element.
  returned: in check mode or with -vv, when something changes
  type: list
  elements: str
  sample:
    - create netpol4-db-clients-t hash:net family inet maxelem 65536
    - add netpol4-db-clients-t 10.0.0.5
    - swap netpol4-db-clients-t netpol4-db-clients
    - destroy netpol4-db-clients-t
"""

from typing import Any, Dict, List, Tuple

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.netpol.fleet.plugins.module_utils.ipset.text import FAMILIES, SET_TYPES, SavedSet
from ansible_collections.netpol.fleet.plugins.module_utils.ipset.sets import (
    PlanError,
    apply,
    build_set,
    diff,
    plan,
    read_state,
    sets_from_text,
    without_references,
)
from ansible_collections.netpol.fleet.plugins.module_utils.iptables.chains import owned_set_references
from ansible_collections.netpol.fleet.plugins.module_utils.tools import ToolError

SET_SPEC = dict(
    type=dict(type="str", default="hash:net", choices=list(SET_TYPES)),
    family=dict(type="str", default="inet", choices=list(FAMILIES)),
    members=dict(type="list", elements="raw", default=[]),
    options=dict(type="raw"),
    state=dict(type="str", default="present", choices=["present", "absent"]),
)

ARGUMENT_SPEC = dict(
    name=dict(type="str"),
    sets=dict(type="list", elements="dict", options=dict(name=dict(type="str", required=True), **SET_SPEC)),
    content=dict(type="str"),
    src=dict(type="path"),
    purge_prefix=dict(type="list", elements="str"),
    keep=dict(type="list", elements="str"),
    released_chain_prefix=dict(type="str"),
    **SET_SPEC
)


SOURCES = ("name", "sets", "content", "src")  # the ways to say which sets are wanted


def requested(params: Dict[str, Any]) -> Tuple[List[SavedSet], List[str]]:
    """The desired sets, validated and normalised, and the names that must be absent."""
    if params["content"] is not None:
        return sets_from_text(params["content"]), []
    if params["src"] is not None:
        return sets_from_text(read_text(params["src"])), []
    items = params["sets"] if params["sets"] is not None else [params] if params["name"] else []
    names = [item["name"] for item in items]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PlanError("sets listed more than once: %s" % ", ".join(duplicates))
    present = [build_set(i["name"], i["type"], i["family"], i["members"], i["options"])
               for i in items if i["state"] == "present"]
    return present, [i["name"] for i in items if i["state"] == "absent"]


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as text:
            return text.read()
    except (OSError, UnicodeError) as e:
        raise PlanError("src %s cannot be read: %s" % (path, e))


def invocation(params: Dict[str, Any]) -> Dict[str, Any]:
    """The arguments as the result reports them back, each member list replaced by its length:
    echoing 100,000 members would cost the module and the controller seconds and tell nobody much."""
    def brief(item: Dict[str, Any]) -> Dict[str, Any]:
        members = item.get("members")
        return dict(item, members="(%d members)" % len(members)) if members else item
    summary = brief(params)
    if params.get("content"):
        summary["content"] = "(%d lines)" % params["content"].count("\n")
    if params.get("sets"):
        summary["sets"] = [brief(item) for item in params["sets"]]
    return dict(module_args=summary)


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=[SOURCES] + [("keep", other) for other in SOURCES],
        required_by={"keep": "purge_prefix"},
        required_one_of=[SOURCES + ("purge_prefix",)],
        supports_check_mode=True,
    )
    ipset_bin = module.get_bin_path("ipset", required=True)
    purge_prefix = tuple(prefix for prefix in module.params["purge_prefix"] or () if prefix)
    keep = module.params["keep"] or ()
    try:
        desired, absent = requested(module.params)
        actual, references = read_state(module, ipset_bin, [s.name for s in desired] + absent, purge_prefix, keep)
        if module.check_mode and module.params["released_chain_prefix"]:
            released = owned_set_references(module, module.params["released_chain_prefix"])
            references = without_references(references, released)
        the_plan = plan(desired, actual, references, absent, purge_prefix, keep)
        if the_plan.changed and not module.check_mode:
            apply(module, ipset_bin, the_plan)
    except (PlanError, ToolError) as error:
        module.fail_json(msg=str(error), invocation=invocation(module.params))
    for name in the_plan.kept_referenced:
        module.warn("set %s matches purge_prefix but is still referenced; it was kept" % name)
    result: Dict[str, Any] = dict(
        changed=the_plan.changed,
        sets={c.name: c.to_dict() for c in the_plan.changes},
        kept_referenced=list(the_plan.kept_referenced),
        invocation=invocation(module.params),
    )
    if the_plan.changed and (module.check_mode or module._verbosity >= 2):
        result["commands"] = list(the_plan.script)
    if module._diff:
        before, after = diff(the_plan, desired, actual)
        result["diff"] = dict(before="".join(line + "\n" for line in before),
                              after="".join(line + "\n" for line in after))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
