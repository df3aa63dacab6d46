# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Anti-spoofing through playbooks/site.yml on a bridge lab: the enforce role applies each VM port's
layer-2 checks (ebtables nat) in the same per-host transaction as the sets and the iptables and
ip6tables chains, and the remove role takes them away.

One hypervisor namespace, five VM namespaces on its bridge (test_bridge_e2e's "one" layout), and a
foreign ebtables state on the hypervisor (a CNI chain with an --among-src rule, a bridge filter
rule). The policy lets b-db be reached from a-api only: a-web forging a-api's source IP (IPv4,
IPv6) or MAC would pass the layer-3 rules, so only the layer-2 checks can stop it. Each attack is
sent as raw frames (AF_PACKET) before the first enforce too, where it works, so the test can fail.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple

import pytest

from conftest import ansible_env, run_playbook, write_lab_inventory
from test_bridge_e2e import FAST, NAMESPACES, BridgeLab, build, inventory_hosts, vm_mac, vm_port
from test_enforce_e2e import HOSTS, changed_counts, policy, pods

sys.path.insert(0, str(Path(__file__).parent))
import l2_frames as frames  # noqa: E402  pylint: disable=wrong-import-position

FRAMES = str(Path(__file__).parent / "l2_frames.py")
BROADCAST = "ff:ff:ff:ff:ff:ff"
INDEX = {name: index for index, name in enumerate(HOSTS, 1)}  # the lab's MACs and addresses by VM


def mac(vm: str) -> str:
    return vm_mac(INDEX[vm])


def ip4(vm: str) -> str:
    return "10.77.0.%d" % INDEX[vm]


def ip6(vm: str) -> str:
    return "fd77::%d" % INDEX[vm]


# b-db admits a-api only; nothing else is isolated.
DB_FROM_API = [policy("beta", "db-from-api", {"podSelector": pods(app="db"), "ingress": [
    {"from": [{"namespaceSelector": {}, "podSelector": pods(app="api")}]}]})]
DB_FROM_CLI = [policy("beta", "db-from-cli", {"podSelector": pods(app="db"), "ingress": [
    {"from": [{"namespaceSelector": {}, "podSelector": pods(app="client")}]}]})]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[BridgeLab]:
    for built in build(tmp_path_factory, "one"):  # one lab, torn down when the loop ends
        built.pristine_ebtables = ebtables(built)  # the foreign chains and rules alone
        yield built


def hypervisor(lab: BridgeLab) -> str:
    return lab.hypervisors[0]


def ebtables(lab: BridgeLab) -> str:
    return lab.kernel(hypervisor(lab), "ebtables-save")


def foreign_ebtables(lab: BridgeLab) -> List[str]:
    return [line for line in ebtables(lab).splitlines() if "NETPOL-" not in line]


def ensure_removed(lab: BridgeLab) -> None:
    """Back to the hypervisor as the lab built it (the remove role's own promise, checked)."""
    run_playbook("playbooks/remove.yml", lab.inventory)
    assert lab.snapshot() == lab.pristine


# ---------------------------------------------------------------- raw frames from a VM


def marker() -> bytes:
    return b"netpol-l2-" + uuid.uuid4().hex[:12].encode()


def fence(sender: str, mark: bytes) -> bytes:
    """An ARP request from the sender's own MAC and address with the fence text as padding: every
    layer-2 check lets it through and iptables never sees ARP, so every watcher receives it."""
    body = frames.arp(1, mac(sender), ip4(sender), "00:00:00:00:00:00", "10.77.0.254") + mark
    return frames.ethernet(BROADCAST, mac(sender), 0x0806, body)


def delivered(lab: BridgeLab, sender: str, frame: bytes, mark: bytes, watchers: Sequence[str]) -> List[str]:
    """The watchers whose eth0 received `frame` (sent raw from the sender's eth0), each watching
    until the sender's fence, which comes after it: what did not arrive was dropped, not late."""
    stop = mark[:-4] + b"done"
    sniffers = {vm: subprocess.Popen(["ip", "netns", "exec", lab[vm], sys.executable, FRAMES, "sniff", "eth0",
                                      mark.hex(), stop.hex()], stdout=subprocess.PIPE, text=True)
                for vm in watchers}
    for sniffer in sniffers.values():
        assert sniffer.stdout.readline().strip() == "ready"
    subprocess.run(["ip", "netns", "exec", lab[sender], sys.executable, FRAMES, "send", "eth0", frame.hex(),
                    fence(sender, stop).hex()], check=True)
    counts = {vm: int(sniffer.communicate()[0].strip()) for vm, sniffer in sniffers.items()}
    assert -1 not in counts.values(), "a watcher never saw the fence: %s" % counts
    return sorted(vm for vm, count in counts.items() if count)


def udp4_as(sender: str, src_mac: str, src_ip: str, to: str) -> Tuple[bytes, bytes]:
    mark = marker()
    return frames.ethernet(mac(to), src_mac, 0x0800, frames.ipv4_udp(src_ip, ip4(to), 4000, 4001, mark)), mark


def udp6_as(sender: str, src_ip: str, to: str) -> Tuple[bytes, bytes]:
    mark = marker()
    return frames.ethernet(mac(to), mac(sender), 0x86DD, frames.ipv6_udp(src_ip, ip6(to), 4000, 4001, mark)), mark


OTHERS = ("a-api", "b-db", "b-cli", "g-mon")  # everyone but the attacker a-web

ATTACKS = {
    # a-web sends as a-api to b-db, which admits a-api: only the layer-2 checks can stop these.
    "forged source MAC and IP": lambda: udp4_as("a-web", mac("a-api"), ip4("a-api"), "b-db"),
    "forged IPv4 source": lambda: udp4_as("a-web", mac("a-web"), ip4("a-api"), "b-db"),
    "forged IPv6 source": lambda: udp6_as("a-web", ip6("a-api"), "b-db"),
}


def attacks_reaching(lab: BridgeLab) -> Dict[str, List[str]]:
    return {name: delivered(lab, "a-web", *attack(), watchers=OTHERS) for name, attack in ATTACKS.items()}


def fdb_port(lab: BridgeLab, address: str) -> List[str]:
    lines = lab.run_in(hypervisor(lab), "bridge", "fdb", "show").splitlines()
    return [line.split()[2] for line in lines if line.startswith(address + " ") and "permanent" not in line]


def talk(lab: BridgeLab, sender: str, receiver: str, address: str) -> None:
    """A UDP datagram over sockets: ARP or ND resolves the receiver's address on the way."""
    text = uuid.uuid4().hex
    listener = subprocess.Popen(["ip", "netns", "exec", lab[receiver], sys.executable, FRAMES, "listen", address,
                                 "5353"], stdout=subprocess.PIPE, text=True)
    assert listener.stdout.readline().strip() == "ready"
    subprocess.run(["ip", "netns", "exec", lab[sender], sys.executable, FRAMES, "say", address, "5353", text],
                   check=True)
    assert listener.communicate()[0].strip() == text, "%s -> %s %s" % (sender, receiver, address)


# ---------------------------------------------------------------- the tests


def test_check_mode_changes_nothing_and_the_diff_shows_the_l2_chains(lab):
    ensure_removed(lab)
    out = lab.site(DB_FROM_API, "--check", "--diff").stdout
    assert lab.snapshot() == lab.pristine
    assert "+++ after: bridge nat chain NETPOL-L2\n" in out and "+++ after: bridge nat jumps\n" in out, out
    assert len(set(re.findall(r"after: bridge nat chain (NETPOL-L2-\w+)", out))) == len(HOSTS)  # one per port
    assert "+-A NETPOL-L2 -i %s -j NETPOL-L2-" % vm_port("a-web") in out
    assert re.search(r"^\+-A NETPOL-L2-\w+ -s ! %s -j NETPOL-L2D-" % mac("a-web"), out, re.M)


def test_forged_sources_reach_nobody_while_allowed_flows_arp_nd_and_dhcp_discover_work(lab):
    ensure_removed(lab)
    assert all("b-db" in reached for reached in attacks_reaching(lab).values())  # without anti-spoofing they work
    talk(lab, "a-api", "b-cli", ip4("b-cli"))  # a-api speaks again: its MAC back on its own port
    assert fdb_port(lab, mac("a-api")) == [vm_port("a-api")]

    lab.enforce_and_verify(DB_FROM_API)  # every flow measured as the simulator expects it
    assert attacks_reaching(lab) == {name: [] for name in ATTACKS}
    assert fdb_port(lab, mac("a-api")) == [vm_port("a-api")]  # the forged MAC was dropped before learning
    # What the attacks imitated is allowed and arrives: a-api itself, by raw frames too.
    for frame, mark in (udp4_as("a-api", mac("a-api"), ip4("a-api"), "b-db"), udp6_as("a-api", ip6("a-api"), "b-db")):
        assert delivered(lab, "a-api", frame, mark, watchers=["b-db"]) == ["b-db"]

    mark = marker()
    discover = frames.ethernet(BROADCAST, mac("a-web"), 0x0800,
                               frames.ipv4_udp("0.0.0.0", "255.255.255.255", 68, 67, mark))
    assert delivered(lab, "a-web", discover, mark, watchers=["b-cli", "g-mon"]) == ["b-cli", "g-mon"]
    for vm in ("a-api", "b-db"):
        lab.run_in(lab[vm], "ip", "neigh", "flush", "dev", "eth0")
    talk(lab, "a-api", "b-db", ip4("b-db"))  # ARP
    talk(lab, "a-api", "b-db", ip6("b-db"))  # neighbour discovery
    talk(lab, "b-db", "a-api", "fe80::5054:ff:fe77:%d%%eth0" % INDEX["a-api"])  # to its EUI-64 link-local


def test_second_run_changes_nothing_and_foreign_ebtables_stay_byte_identical(lab):
    lab.site(DB_FROM_API)
    again = lab.site(DB_FROM_API)
    assert set(changed_counts(again.stdout).values()) == {0}, again.stdout
    assert "NETPOL-L2" in ebtables(lab)
    assert foreign_ebtables(lab) == lab.pristine_ebtables.splitlines()


def owned(lab: BridgeLab) -> str:
    """What the collection owns on the hypervisor: sets with members, our chains and jumps of
    iptables, ip6tables and ebtables."""
    ns = hypervisor(lab)
    lines = [line for command in ("iptables-save", "ip6tables-save", "ebtables-save")
             for line in lab.kernel(ns, command).splitlines() if "NETPOL-" in line or line.startswith("*")]
    sets = [re.sub(r" (initval|bucketsize|hashsize) \S+", "", line) for line in lab.kernel(ns, "ipset save").splitlines()
            if line.split()[1].startswith("netpol")]
    return "\n".join(lines + sorted(sets))


def failing_ebtables_restore(lab: BridgeLab, directory: Path) -> Dict[str, str]:
    """PATH with an ebtables-restore that fails in the hypervisor's own namespace only: its dry check
    (a restore into a scratch namespace) passes, the real write after both IP families fails."""
    inode = lab.run_in(hypervisor(lab), "readlink", "/proc/self/ns/net").strip()
    directory.mkdir(parents=True, exist_ok=True)
    shim = directory / "ebtables-restore"
    shim.write_text('#!/bin/sh\nif [ "$(readlink /proc/self/ns/net)" = "%s" ]; then\n'
                    '  cat >/dev/null; echo "ebtables-restore: injected failure" >&2; exit 1\nfi\n'
                    'exec /usr/sbin/ebtables-restore "$@"\n' % inode)
    shim.chmod(0o755)
    env = ansible_env()
    env["PATH"] = "%s:%s" % (directory, env["PATH"])
    return env


def with_extra_address(lab: BridgeLab) -> None:
    """The inventory, but a-web may also send from 10.77.0.50: its port's layer-2 checks change."""
    inventory = inventory_hosts(lab.prefix, lab.layout)
    for workload in inventory["hv1"]["netpol_workloads"]:
        if workload["name"] == "a-web":
            workload["allowed_addresses"] = ["10.77.0.50"]
    write_lab_inventory(lab.inventory.parent, lab.prefix, inventory, {"netpol_namespaces": NAMESPACES})


def test_a_failing_ebtables_restore_leaves_the_hypervisor_wholly_on_its_old_state(lab, tmp_path):
    lab.site(DB_FROM_API)
    before = owned(lab)
    with_extra_address(lab)  # the next state differs in sets, both IP families and the layer-2 checks
    try:
        planned = lab.site(DB_FROM_CLI, "--check", "--diff").stdout
        assert "after: bridge nat chain NETPOL-L2-" in planned and "after: ipv6 filter chain" in planned
        failed = run_playbook("playbooks/site.yml", lab.inventory, "-e", lab.vars_file(DB_FROM_CLI), *FAST,
                              check=False, env=failing_ebtables_restore(lab, tmp_path / "bin"))
        assert failed.returncode != 0 and "ebtables-restore: injected failure" in failed.stdout, failed.stdout
        assert "the host is on its previous state" in failed.stdout
        assert owned(lab) == before
        lab.site(DB_FROM_CLI)  # the same run without the fault gets there
        assert "--ip-src 10.77.0.50 -j RETURN" in ebtables(lab)
    finally:
        lab.rewrite(HOSTS)
    lab.site(DB_FROM_API)
    assert owned(lab) == before


def test_remove_takes_the_l2_checks_away_and_leaves_foreign_ebtables(lab):
    lab.site(DB_FROM_API)
    check = run_playbook("playbooks/remove.yml", lab.inventory, "--check", "--diff").stdout
    assert "--- before: bridge nat chain NETPOL-L2\n" in check and "before: bridge nat jumps" in check
    assert "NETPOL-L2" in ebtables(lab)
    run_playbook("playbooks/remove.yml", lab.inventory)
    assert "NETPOL" not in ebtables(lab)
    assert lab.snapshot() == lab.pristine  # foreign ebtables chains and rules included, byte for byte
