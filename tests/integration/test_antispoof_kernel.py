# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Layer-2 anti-spoofing on the real kernel: raw frames (AF_PACKET) between VMs on a bridge.

A hypervisor namespace holds bridge br0 with ports p1, p2, p3; VM namespaces vm1 (the attacker,
with allowed extra addresses .50 / ::50), vm2 (the victim) and vm3 (an observer) sit behind them.
The rules are compiled by bridge/antispoof.py and applied by the ebtables backend, in the
hypervisor. Each attack is first sent without the rules, to show it works there (so the test can
fail), then with them.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import List, Sequence, Tuple

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.bridge.antispoof import antispoof_table, deny_chain
from ansible_collections.netpol.fleet.plugins.module_utils.ebtables import chains
from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import Table
from ansible_collections.netpol.fleet.plugins.module_utils.engine.ir import LogOptions, Workload

sys.path.insert(0, str(Path(__file__).parent))
import l2_frames as frames  # noqa: E402  pylint: disable=wrong-import-position

pytestmark = pytest.mark.integration

FRAMES = str(Path(__file__).parent / "l2_frames.py")
BROADCAST = "ff:ff:ff:ff:ff:ff"
VMS = {
    "vm1": ("02:00:0a:4d:00:01", "10.77.0.1", "fd77::1"),
    "vm2": ("02:00:0a:4d:00:02", "10.77.0.2", "fd77::2"),
    "vm3": ("02:00:0a:4d:00:03", "10.77.0.3", "fd77::3"),
}
MAC1, IP1, IP6_1 = VMS["vm1"]
MAC2, IP2, _IP6_2 = VMS["vm2"]
MAC3, IP3, IP6_3 = VMS["vm3"]
LL1, LL3 = "fe80::aff:fe4d:1", "fe80::aff:fe4d:3"  # the EUI-64 link-locals the kernel forms
ALLOWED = ("10.77.0.50", "fd77::50")


class Lab:
    def __init__(self, prefix: str):
        self.prefix = prefix
        self.hv = prefix + "hv"

    def ns(self, vm: str) -> str:
        return self.prefix + vm

    def sh(self, ns: str, command: str, check: bool = True) -> str:
        done = subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", command], capture_output=True, text=True, check=False)
        assert done.returncode == 0 or not check, "%s: %s" % (command, done.stderr)
        return done.stdout

    # The ebtables backend runs its tools through this, as a module's run_command would.
    def run_command(self, argv, data=None, **_kwargs):
        done = subprocess.run(["ip", "netns", "exec", self.hv] + list(argv), input=data, capture_output=True,
                              text=True, check=False)
        return done.returncode, done.stdout, done.stderr

    def workloads(self) -> List[Workload]:
        return [Workload(vm, "tenant", (), (ip4, ip6), host="hv", interface=port, mac=mac,
                         allowed_addresses=ALLOWED if vm == "vm1" else ())
                for port, (vm, (mac, ip4, ip6)) in zip(("p1", "p2", "p3"), VMS.items())]

    def protect(self, on: bool) -> None:
        table = antispoof_table(self.workloads(), LogOptions(group=7, limit="60/min", burst=50)) if on else \
            Table("bridge", "nat")
        chains.converge(self, [table], "NETPOL-")

    def fdb_port(self, mac: str) -> List[str]:
        lines = self.sh(self.hv, "bridge fdb show br br0").splitlines()
        return [line.split()[2] for line in lines if line.startswith(mac + " ") and "permanent" not in line]

    def talk(self, sender: str, receiver: str, address: str) -> None:
        """One UDP datagram from sender to receiver's `address` (ARP / ND resolve it on the way)."""
        text = uuid.uuid4().hex
        listener = subprocess.Popen(["ip", "netns", "exec", self.ns(receiver), sys.executable, FRAMES, "listen",
                                     address, "5353"], stdout=subprocess.PIPE, text=True)
        assert listener.stdout.readline().strip() == "ready"
        self.sh(self.ns(sender), "%s %s say %s 5353 %s" % (sys.executable, FRAMES, address, text))
        assert listener.communicate()[0].strip() == text, "%s -> %s %s" % (sender, receiver, address)

    def neighbour(self, vm: str, ip: str) -> str:
        return self.sh(self.ns(vm), "ip neigh show %s dev eth0" % ip).strip()

    def deny_count(self, vm: str) -> int:
        """Frames the deny chain of vm's port logged (its first rule: limit + NFLOG)."""
        workload = next(w for w in self.workloads() if w.name == vm)
        listing = self.sh(self.hv, "ebtables -t nat -L %s --Lc" % deny_chain(workload))
        first = next(line for line in listing.splitlines() if "--nflog-prefix" in line)
        return int(first.split("pcnt = ")[1].split()[0])


def _build(lab: Lab) -> None:
    lab.sh(lab.hv, "ip link add br0 type bridge && ip link set br0 up")
    for port, (vm, (mac, ip4, ip6)) in zip(("p1", "p2", "p3"), VMS.items()):
        ns = lab.ns(vm)
        subprocess.run(["ip", "netns", "add", ns], check=True)
        lab.sh(lab.hv, "ip link add %s type veth peer name eth0 netns %s" % (port, ns))
        lab.sh(lab.hv, "ip link set %s master br0 && ip link set %s up" % (port, port))
        lab.sh(ns, "ip link set eth0 address %s && ip link set lo up && ip link set eth0 up" % mac)
        lab.sh(ns, "ip addr add %s/24 dev eth0 && ip -6 addr add %s/64 dev eth0 nodad" % (ip4, ip6))
        lab.sh(ns, "sysctl -qw net.ipv4.neigh.eth0.locktime=0 net.ipv6.conf.eth0.accept_ra=0")
    lab.sh(lab.ns("vm1"), "ip addr add %s/24 dev eth0 && ip -6 addr add %s/64 dev eth0 nodad" % ALLOWED)
    for vm in VMS:  # every MAC learned on its own port, every link-local usable
        wait_for(lambda vm=vm: "tentative" not in lab.sh(lab.ns(vm), "ip -6 addr show dev eth0"), "DAD of %s" % vm)
        lab.talk(vm, "vm3" if vm != "vm3" else "vm1", IP3 if vm != "vm3" else IP1)


def wait_for(condition, what: str, tries: int = 100) -> None:
    for _attempt in range(tries):
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("gave up waiting for %s" % what)


@pytest.fixture(scope="module")
def lab():
    prefix = "npas%s-" % uuid.uuid4().hex[:6]
    built = Lab(prefix)
    subprocess.run(["ip", "netns", "add", built.hv], check=True)
    try:
        _build(built)
        yield built
    finally:
        for name in [built.hv] + [built.ns(vm) for vm in VMS]:
            subprocess.run(["ip", "netns", "delete", name], check=False)


def delivered(lab: Lab, sender: str, frame: bytes, marker: bytes, watchers: Sequence[str] = ("vm2", "vm3")) -> int:
    """How many of the watchers' eth0 saw `frame` (sent raw from sender's eth0) arrive.

    The sender follows it with a fence: a broadcast from its own MAC and address, which every
    rule lets through; a watcher stops at the fence, so what was dropped was really dropped."""
    mac, ip4, _ip6 = VMS[sender]
    fence = marker[:-4] + b"done"
    fence_frame = frames.ethernet(BROADCAST, mac, 0x0800, frames.ipv4_udp(ip4, "10.77.0.255", 4000, 9, fence))
    sniffers = [subprocess.Popen(["ip", "netns", "exec", lab.ns(vm), sys.executable, FRAMES, "sniff", "eth0",
                                  marker.hex(), fence.hex()], stdout=subprocess.PIPE, text=True) for vm in watchers]
    for sniffer in sniffers:
        assert sniffer.stdout.readline().strip() == "ready"
    lab.sh(lab.ns(sender), "%s %s send eth0 %s %s" % (sys.executable, FRAMES, frame.hex(), fence_frame.hex()))
    counts = [int(sniffer.communicate()[0].strip()) for sniffer in sniffers]
    assert -1 not in counts, "a watcher never saw the fence"
    return sum(1 for c in counts if c)


def marker() -> bytes:
    return b"netpol-l2-" + uuid.uuid4().hex[:12].encode()


def udp4(src_mac: str, src_ip: str, dst_mac: str = MAC3, dst_ip: str = IP3, tags: Tuple = ()) -> Tuple[bytes, bytes]:
    mark = marker()
    return frames.ethernet(dst_mac, src_mac, 0x0800, frames.ipv4_udp(src_ip, dst_ip, 4000, 4001, mark), tags), mark


def udp6(src_ip: str) -> Tuple[bytes, bytes]:
    mark = marker()
    return frames.ethernet(MAC3, MAC1, 0x86DD, frames.ipv6_udp(src_ip, IP6_3, 4000, 4001, mark)), mark


def test_a_forged_source_mac_reaches_nobody_and_the_fdb_keeps_the_victims_port(lab):
    lab.protect(False)
    frame, mark = udp4(MAC2, IP1)
    assert delivered(lab, "vm1", frame, mark) == 1 and lab.fdb_port(MAC2) == ["p1"]  # unprotected: poisoned
    lab.talk("vm2", "vm3", IP3)  # the victim speaks: its MAC back on p2
    assert lab.fdb_port(MAC2) == ["p2"]

    lab.protect(True)
    logged = lab.deny_count("vm1")
    frame, mark = udp4(MAC2, IP1)
    assert delivered(lab, "vm1", frame, mark) == 0
    assert lab.fdb_port(MAC2) == ["p2"]
    assert lab.deny_count("vm1") == logged + 1  # denied through the rate-limited NFLOG rule


def test_a_gratuitous_arp_for_another_vms_address_leaves_neighbours_unchanged(lab):
    def claim():
        payload = frames.arp(2, MAC1, IP2, MAC3, IP3)  # "10.77.0.2 is at vm1's MAC", to vm3
        lab.sh(lab.ns("vm1"), "%s %s send eth0 %s" % (sys.executable, FRAMES,
                                                      frames.ethernet(MAC3, MAC1, 0x0806, payload).hex()))

    lab.protect(False)
    lab.sh(lab.ns("vm3"), "ip neigh flush dev eth0")
    lab.talk("vm3", "vm2", IP2)
    claim()
    wait_for(lambda: MAC1 in lab.neighbour("vm3", IP2), "the unprotected claim")
    lab.sh(lab.ns("vm3"), "ip neigh flush dev eth0")
    lab.talk("vm3", "vm2", IP2)
    assert MAC2 in lab.neighbour("vm3", IP2)

    lab.protect(True)
    claim()
    lab.talk("vm3", "vm1", IP1)  # a frame after the claim: the claim was processed, if at all
    assert MAC2 in lab.neighbour("vm3", IP2)


@pytest.mark.parametrize("family", [4, 6])
def test_forged_sources_are_not_received_and_an_allowed_extra_address_is(lab, family):
    build = (lambda ip: udp4(MAC1, ip)) if family == 4 else udp6
    forged, allowed, own = ("10.77.0.99", ALLOWED[0], IP1) if family == 4 else ("fd77::99", ALLOWED[1], IP6_1)
    lab.protect(False)
    assert delivered(lab, "vm1", *build(forged), watchers=["vm3"]) == 1
    lab.protect(True)
    assert delivered(lab, "vm1", *build(forged), watchers=["vm3"]) == 0
    assert delivered(lab, "vm1", *build(IP2 if family == 4 else "fd77::2"), watchers=["vm3"]) == 0  # the victim's
    assert delivered(lab, "vm1", *build(allowed), watchers=["vm3"]) == 1
    assert delivered(lab, "vm1", *build(own), watchers=["vm3"]) == 1
    if family == 6:
        assert delivered(lab, "vm1", *build(LL1), watchers=["vm3"]) == 1  # its link-local


def _dhcp_offer() -> Tuple[bytes, bytes]:
    mark = marker()
    return frames.ethernet(BROADCAST, MAC1, 0x0800, frames.ipv4_udp(IP1, "255.255.255.255", 67, 68, mark)), mark


def _router_advertisement() -> Tuple[bytes, bytes]:
    mark = marker()
    body = struct_ra() + mark
    return frames.ethernet("33:33:00:00:00:01", MAC1, 0x86DD, frames.icmpv6(LL1, "ff02::1", 134, body)), mark


def struct_ra() -> bytes:
    return bytes([64, 0, 0x07, 0x08]) + bytes(8)  # hop limit, flags, lifetime 1800 s, reachable, retrans


def _dhcpv6_reply() -> Tuple[bytes, bytes]:
    mark = marker()
    return frames.ethernet(MAC3, MAC1, 0x86DD, frames.ipv6_udp(LL1, LL3, 547, 546, mark)), mark


@pytest.mark.parametrize("server", [_dhcp_offer, _router_advertisement, _dhcpv6_reply],
                         ids=["dhcp offer", "router advertisement", "dhcpv6 reply"])
def test_server_messages_from_a_vm_reach_no_one(lab, server):
    lab.protect(False)
    assert delivered(lab, "vm1", *server()) >= 1
    lab.protect(True)
    assert delivered(lab, "vm1", *server()) == 0


def test_dhcp_discover_and_ipv6_dad_and_neighbour_discovery_still_work(lab):
    lab.protect(True)
    mark = marker()
    discover = frames.ethernet(BROADCAST, MAC1, 0x0800, frames.ipv4_udp("0.0.0.0", "255.255.255.255", 68, 67, mark))
    assert delivered(lab, "vm1", discover, mark) == 2
    # DAD: vm1 tries to take vm2's address; its NS from :: passes, vm2's answer makes it fail.
    lab.sh(lab.ns("vm1"), "ip -6 addr add fd77::2/64 dev eth0")
    wait_for(lambda: "dadfailed" in lab.sh(lab.ns("vm1"), "ip -6 addr show dev eth0"), "DAD to find vm2")
    lab.sh(lab.ns("vm1"), "ip -6 addr del fd77::2/64 dev eth0")
    lab.sh(lab.ns("vm1"), "ip -6 neigh flush dev eth0")
    lab.talk("vm1", "vm3", IP6_3)  # neighbour discovery, by global and by link-local address
    lab.talk("vm3", "vm1", LL1 + "%eth0")


@pytest.mark.parametrize("tpid", [0x8100, 0x88A8], ids=["802.1Q", "802.1ad"])
@pytest.mark.parametrize("filter_vlan_tagged", ["0", "1"])
def test_tagged_frames_from_a_vm_port_are_dropped(lab, tpid, filter_vlan_tagged):
    knob = "/proc/sys/net/bridge/bridge-nf-filter-vlan-tagged"
    lab.sh(lab.hv, "echo %s > %s" % (filter_vlan_tagged, knob))
    lab.protect(False)
    assert delivered(lab, "vm1", *udp4(MAC1, IP1, tags=((tpid, 10),)), watchers=["vm3"]) == 1
    lab.protect(True)
    assert delivered(lab, "vm1", *udp4(MAC1, IP1, tags=((tpid, 10),)), watchers=["vm3"]) == 0
    assert lab.sh(lab.hv, "cat %s" % knob).strip() == filter_vlan_tagged


def test_the_vms_own_traffic_is_unaffected(lab):
    lab.protect(True)
    lab.sh(lab.ns("vm1"), "ip neigh flush dev eth0")
    for sender in VMS:
        for receiver, (_mac, ip4, ip6) in VMS.items():
            if receiver != sender:
                lab.talk(sender, receiver, ip4)
                lab.talk(sender, receiver, ip6)
    table = antispoof_table(lab.workloads(), LogOptions(group=7, limit="60/min", burst=50))
    assert not chains.prepare(lab, table, "NETPOL-").plan.changed  # applied as compiled: no change on a rerun
