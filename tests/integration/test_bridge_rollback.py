# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-bridge br_netfilter flags are part of the host's transaction: a run that fails after it
switched a bridge's flags on, and the automatic rollback, leave every bridge as it was
(/sys/class/net/BRIDGE/bridge/nf_call_ip{,6}tables), with the chains and sets.

hv1 has two bridges: br-net (a-web, a-api: managed from the first run) and br-b (b-vm: listed in
netpol_workloads only by the second run, so that run switches br-b's flags on).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any, Dict

import pytest

from conftest import run_adhoc, run_playbook, write_lab_inventory
from test_bridge_e2e import BRIDGE, inventory_hosts, vm_mac
from test_enforce_e2e import FAST, HOSTS, NAMESPACES, policy, pods, session_token
from test_enforce_faults import real, wrappers

pytestmark = pytest.mark.integration

# A and B differ in their peer sets: B's run purges A's set (the step that fails below comes last).
POLICY_A = [policy("alpha", "api-from-web", {"podSelector": pods(app="api"), "ingress": [
    {"from": [{"podSelector": pods(app="web")}]}]})]
POLICY_B = [policy("alpha", "api-from-front", {"podSelector": pods(app="api"), "ingress": [
    {"from": [{"podSelector": pods(tier="front")}, {"ipBlock": {"cidr": "10.78.0.0/24"}}]}]})]
B_VM = {"name": "b-vm", "namespace": "beta", "addresses": ["10.78.0.9"], "interface": "vm-b", "mac": vm_mac(9),
        "antispoof": "off"}


def hosts(prefix: str, with_b_vm: bool) -> Dict[str, dict]:
    two = {name: HOSTS[name] for name in ("a-web", "a-api")}
    inventory = inventory_hosts(prefix, {name: "hv1" for name in two}, two)
    inventory["hv1"]["lab_bridges"] = [BRIDGE, "br-b"]
    inventory["b-vm"] = {"netpol_addresses": ["10.78.0.9/24"], "netpol_ports": [],
                         "lab_vm": {"hypervisor": prefix + "hv1", "bridge": "br-b", "port": "vm-b", "mac": vm_mac(9)}}
    if with_b_vm:
        inventory["hv1"]["netpol_workloads"].append(dict(B_VM))
    return inventory


def ns_run(ns: str, *argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], check=True, capture_output=True, text=True).stdout


def flags(ns: str) -> Dict[str, str]:
    out = ns_run(ns, "sh", "-c", "grep -H . /sys/class/net/*/bridge/nf_call_ip*tables")
    return dict(line.rsplit(":", 1) for line in out.split())


def owned(ns: str) -> str:
    """What the collection owns on hv1: chains and jumps of every table, sets (minus hash seeds), the record."""
    lines = [line for tool in ("iptables-save", "ip6tables-save") for line in ns_run(ns, tool).splitlines()
             if "NETPOL-" in line]
    sets = [re.sub(r" (initval|bucketsize|hashsize) \S+", "", line) for line in ns_run(ns, "ipset", "save").splitlines()
            if line.split()[1].startswith("netpol")]
    return "\n".join(lines + sorted(sets))


@pytest.fixture
def lab(make_lab, tmp_path) -> Dict[str, Any]:
    prefix = "npb%sr-" % session_token()
    built = make_lab(prefix, hosts(prefix, with_b_vm=False), {"netpol_namespaces": NAMESPACES})
    return {"prefix": prefix, "hv1": prefix + "hv1", "inventory": built.inventory, "dir": tmp_path}


def enforce(lab: Dict[str, Any], policies, with_b_vm: bool, env=None, check: bool = True):
    write_lab_inventory(Path(lab["inventory"]).parent, lab["prefix"], hosts(lab["prefix"], with_b_vm),
                        {"netpol_namespaces": NAMESPACES})
    variables = lab["dir"] / "policies.json"
    variables.write_text(json.dumps({"netpol_policies": policies}))
    return run_playbook("playbooks/site.yml", lab["inventory"], "-e", "@%s" % variables, *FAST, env=env, check=check)


def on(bridge: str, value: str) -> Dict[str, str]:
    return {"/sys/class/net/%s/bridge/nf_call_iptables" % bridge: value,
            "/sys/class/net/%s/bridge/nf_call_ip6tables" % bridge: value}


def test_a_run_failing_after_it_switched_flags_on_leaves_every_bridge_as_it_was(lab):
    enforce(lab, POLICY_A, with_b_vm=False)
    before, state = flags(lab["hv1"]), owned(lab["hv1"])
    assert before == dict(on(BRIDGE, "1"), **on("br-b", "0"))
    failed_once = lab["dir"] / "failed-once"
    env = wrappers(lab["dir"] / "bin", {"ipset": (  # the purge of A's stale set fails, after the flags step
        '[ "$1" = restore ] || exec %(ipset)s "$@"\n'
        'script=$(mktemp); cat > "$script"\n'
        'if ! grep -qv "^destroy " "$script" && mkdir "%(mark)s-$(stat -L -c %%i /proc/self/ns/net)" 2>/dev/null; then\n'
        '  rm -f "$script"; echo "ipset v7.17: Error in line 1: injected failure" >&2; exit 1\n'
        'fi\n'
        '%(ipset)s restore < "$script"; rc=$?; rm -f "$script"; exit $rc\n' % {"ipset": real("ipset"), "mark": failed_once})})
    failed = enforce(lab, POLICY_B, with_b_vm=True, env=env, check=False)
    assert failed.returncode != 0 and "injected failure" in failed.stdout, failed.stdout
    assert flags(lab["hv1"]) == before
    assert owned(lab["hv1"]) == state
    enforce(lab, POLICY_B, with_b_vm=True)  # the same run without the fault switches br-b on
    assert flags(lab["hv1"]) == dict(on(BRIDGE, "1"), **on("br-b", "1"))


def test_the_automatic_rollback_puts_the_flags_back_with_the_chains(lab):
    enforce(lab, POLICY_A, with_b_vm=False)
    before, state = flags(lab["hv1"]), owned(lab["hv1"])
    saved = "/run/netpol-rollback/%s/owned.json" % lab["hv1"]
    run_adhoc(lab["hv1"], lab["inventory"], "netpol.fleet.netpol_host", "save_to=%s" % saved)
    enforce(lab, POLICY_B, with_b_vm=True)
    assert flags(lab["hv1"]) == dict(on(BRIDGE, "1"), **on("br-b", "1"))
    result = run_adhoc(lab["hv1"], lab["inventory"], "netpol.fleet.netpol_host", "restore_from=%s delay=0" % saved)
    assert result[lab["hv1"]]["rolled_back"] is True
    assert result[lab["hv1"]]["bridge_flags"]["switched_off"] == ["br-b nf_call_iptables", "br-b nf_call_ip6tables"]
    assert flags(lab["hv1"]) == before
    assert owned(lab["hv1"]) == state
