# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""802.1Q-tagged frames on a managed bridge meet the policies: raw frames (AF_PACKET) sent from the
hypervisor's uplink port (its switch end), each a VLAN 10 tagged IPv4 or IPv6 UDP datagram from the
outside host's address to a managed VM, watched for at the VM's port.

a-api's ingress denies everything, a-web is not isolated. While the hypervisor's
net.bridge.bridge-nf-filter-vlan-tagged is 0 (the kernel's default) a tagged frame never meets
iptables and reaches a-api anyway; the enforce role switches it on with the bridge flags, and then
only a-web's frames arrive. remove puts the knob back. (A VLAN-aware bridge, vlan_filtering 1,
cannot be built by every kernel: test_module_netpol_bridge skips its case, printing why.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from conftest import run_playbook
from test_bridge_e2e import inventory_hosts, vm_mac
from test_enforce_e2e import FAST, HOSTS, NAMESPACES, changed_counts, policy, pods, session_token

sys.path.insert(0, str(Path(__file__).parent))
import l2_frames as frames  # noqa: E402  pylint: disable=wrong-import-position

pytestmark = pytest.mark.integration

FRAMES = str(Path(__file__).parent / "l2_frames.py")
KNOB = "/proc/sys/net/bridge/bridge-nf-filter-vlan-tagged"
OUTSIDE_MAC = "52:54:00:77:00:ee"
VLAN = ((0x8100, 10),)
API_DENIES_ALL = [policy("alpha", "api-deny-all", {"podSelector": pods(app="api"), "policyTypes": ["Ingress"]})]
VMS = {"web": ("a-web", vm_mac(1), "10.77.0.1", "fd77::1"), "api": ("a-api", vm_mac(2), "10.77.0.2", "fd77::2")}


def ns_run(ns: str, *argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def lab(make_lab, tmp_path) -> Dict[str, Any]:
    prefix = "npb%sv-" % session_token()
    two = {name: HOSTS[name] for name in ("a-web", "a-api")}
    built = make_lab(prefix, inventory_hosts(prefix, {name: "hv1" for name in two}, two),
                     {"netpol_namespaces": NAMESPACES})
    hv1 = prefix + "hv1"
    if subprocess.run(["ip", "netns", "exec", hv1, "test", "-e", KNOB], check=False).returncode != 0:
        pytest.skip("this kernel has no %s: tagged frames cannot be made to meet iptables" % KNOB)
    variables = tmp_path / "policies.json"
    variables.write_text(json.dumps({"netpol_policies": API_DENIES_ALL}))
    return {"prefix": prefix, "hv1": hv1, "switch": prefix + "sw", "inventory": built.inventory,
            "vars": "@%s" % variables}


def enforce(lab: Dict[str, Any]) -> str:
    return run_playbook("playbooks/site.yml", lab["inventory"], "-e", lab["vars"], *FAST).stdout


def tagged_arrivals(lab: Dict[str, Any]) -> Dict[str, List[int]]:
    """Per VM, how many of its tagged datagrams (IPv4, IPv6) reached its port: each VM watches its eth0
    until a fence (a tagged non-IP frame to it, which no IP rule can stop) arrives after them."""
    sniffers, sent = {}, []
    for key, (name, mac, ip4, ip6) in VMS.items():
        markers = [("tagged ipv4 to %s" % key).encode(), ("tagged ipv6 to %s" % key).encode()]
        fence = ("fence for %s" % key).encode()
        sniffers[key] = [subprocess.Popen(["ip", "netns", "exec", lab["prefix"] + name, sys.executable, FRAMES, "sniff",
                                           "eth0", marker.hex(), fence.hex()], stdout=subprocess.PIPE, text=True)
                         for marker in markers]
        sent += [frames.ethernet(mac, OUTSIDE_MAC, 0x0800, frames.ipv4_udp("10.77.0.200", ip4, 4000, 7000, markers[0]),
                                 VLAN),
                 frames.ethernet(mac, OUTSIDE_MAC, 0x86DD, frames.ipv6_udp("fd77::200", ip6, 4000, 7000, markers[1]),
                                 VLAN),
                 frames.ethernet(mac, OUTSIDE_MAC, 0x88B5, fence, VLAN)]
    for watchers in sniffers.values():
        for sniffer in watchers:
            assert sniffer.stdout.readline().strip() == "ready"
    # The switch's end of hv1's uplink (named after hv1): what it sends enters br-net by the uplink port.
    ns_run(lab["switch"], sys.executable, FRAMES, "send", lab["hv1"], *(frame.hex() for frame in sent))
    counts = {key: [int(s.communicate(timeout=30)[0].strip()) for s in watchers] for key, watchers in sniffers.items()}
    assert -1 not in counts["web"] + counts["api"], "a VM never saw its fence: %s" % counts
    return counts


def test_tagged_frames_from_the_uplink_meet_the_vms_policies(lab):
    assert ns_run(lab["hv1"], "cat", KNOB).strip() == "0"  # the kernel's default: tagged frames skip iptables
    enforce(lab)
    assert ns_run(lab["hv1"], "cat", KNOB).strip() == "1"
    assert tagged_arrivals(lab) == {"web": [1, 1], "api": [0, 0]}
    ns_run(lab["hv1"], "sh", "-c", "echo 0 > %s" % KNOB)  # without the knob, the deny-all is bypassed
    assert tagged_arrivals(lab) == {"web": [1, 1], "api": [1, 1]}
    out = enforce(lab)
    assert changed_counts(out)[lab["hv1"]] > 0 and ns_run(lab["hv1"], "cat", KNOB).strip() == "1"
    assert tagged_arrivals(lab) == {"web": [1, 1], "api": [0, 0]}
    run_playbook("playbooks/remove.yml", lab["inventory"])
    assert ns_run(lab["hv1"], "cat", KNOB).strip() == "0"
