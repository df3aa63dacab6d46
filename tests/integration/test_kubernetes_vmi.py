# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""KubeVirt VMIs served by a real kube-apiserver, enforced on the lab hypervisor they run on.

The lab's hypervisor is the cluster's Node hv-1 (netpol_node_name); its VMs are namespaces on its
bridge, each the VMI of the same MAC and addresses. No inventory variable names a VM's port: the
compile step finds it in the hypervisor's bridge forwarding database by the VMI's MAC. Real TCP
over IPv4 and IPv6 between the VMs is compared with the simulator; a VMI whose MAC no bridge there
has learned stops the run, naming VMI, hypervisor and MAC, with nothing applied on any host.

With `vmi_antispoof: full` each VMI's port gets the layer-2 checks built from the VMI's status (its
MAC, addresses and link-local addresses): cli forging web's MAC, IPv4 or IPv6 source towards db,
whose policy admits web, is sent as raw frames (AF_PACKET) with the checks off first, where it
arrives (and moves web's MAC to cli's port in the forwarding database the compile step reads), then
with them on, where it reaches nobody, while what the VMs legitimately send still arrives.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest

from conftest import LAB_PLAYBOOK, REPO, delete_netns, run_playbook, session_prefix, write_lab_inventory
from test_kubernetes_source import Site, measured, policy

sys.path.insert(0, str(REPO / "tests" / "kubernetes"))
sys.path.insert(0, str(Path(__file__).parent))
from cluster import Cluster, apiserver_binary  # noqa: E402
import l2_frames as frames  # noqa: E402  pylint: disable=wrong-import-position

BRIDGE = "br-net"
VMS = {  # name -> (MAC, IPv4, IPv6, named port)
    "db": ("52:54:00:78:00:01", "10.78.0.1", "fd78::1", ("pg", 5432)),
    "web": ("52:54:00:78:00:02", "10.78.0.2", "fd78::2", ("http", 80)),
    "cli": ("52:54:00:78:00:03", "10.78.0.3", "fd78::3", ("http", 80)),
}
HYPERVISOR = {"netpol_addresses": ["10.78.0.101/24", "fd78::101/64"], "lab_bridges": [BRIDGE],
              "netpol_node_name": "hv-1"}
DB_FROM_WEB = policy("shop", "db-from-web", {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [
    {"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": "pg"}]}]})
NO_ANTISPOOF = "off"  # these tests are about finding the ports; anti-spoofing: the last tests
# cli's guest also uses a stable-privacy link-local (RFC 7217) beside its EUI-64 one; the VMI reports both.
STABLE_PRIVACY = {"cli": "fe80::9a3c:71ff:2e0b:4d13"}
# db also admits web on UDP 4001: what the raw frames below carry, so only layer 2 can stop a forgery.
DB_UDP_FROM_WEB = policy("shop", "db-udp-from-web", {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [
    {"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"protocol": "UDP", "port": 4001}]}]})
BROADCAST = "ff:ff:ff:ff:ff:ff"


def link_local(mac: str) -> str:
    """The EUI-64 link-local address the kernel gives an interface with this MAC."""
    b = [int(x, 16) for x in mac.split(":")]
    b[0] ^= 2
    return "fe80::%02x%02x:%02xff:fe%02x:%02x%02x" % tuple(b[:3] + b[3:])


def vmi(name: str, mac: str, addresses: tuple, port: tuple, node: str = "hv-1") -> dict:
    reported = ["%s/24" % addresses[0], "%s/64" % addresses[1], "%s/64" % link_local(mac)]
    if name in STABLE_PRIVACY:
        reported.append("%s/64" % STABLE_PRIVACY[name])
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": "shop", "labels": {"app": name}},
            "spec": {"domain": {"devices": {"interfaces": [{"name": "default", "bridge": {}, "ports": [
                {"name": port[0], "port": port[1], "protocol": "TCP"}]}]}}},
            "status": {"phase": "Running", "nodeName": node, "interfaces": [
                {"name": "default", "mac": mac, "ipAddresses": reported}]}}


def lab_hosts(prefix: str) -> Dict[str, dict]:
    hosts = {"hv": dict(HYPERVISOR)}
    for name, (mac, ip4, ip6, port) in VMS.items():
        hosts[name] = {"netpol_addresses": ["%s/24" % ip4, "%s/64" % ip6],
                       "netpol_ports": [{"name": port[0], "port": port[1], "protocol": "TCP"}],
                       "lab_vm": {"hypervisor": prefix + "hv", "bridge": BRIDGE, "port": "vm-" + name, "mac": mac}}
    return hosts


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    binary = apiserver_binary()
    prefix = session_prefix("npk", "kv")
    directory = tmp_path_factory.mktemp("npkv")
    cluster = Cluster(prefix + "kapi", directory / "cluster", binary)
    inventory = write_lab_inventory(directory / "inv", prefix, lab_hosts(prefix))
    try:
        cluster.start()
        cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
        cluster.create_with_status({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "hv-1"},
                                    "status": {"addresses": [{"type": "InternalIP", "address": "10.78.0.101"}]}})
        for name, (mac, ip4, ip6, port) in VMS.items():
            cluster.create_with_status(vmi(name, mac, (ip4, ip6), port))
        cluster.create(DB_FROM_WEB)
        run_playbook(LAB_PLAYBOOK, inventory)
        yield Site(prefix, directory, inventory, cluster)
    finally:
        run_playbook(LAB_PLAYBOOK, inventory, "-e", "state=absent", check=False)
        cluster.stop()
        delete_netns(prefix)


def hypervisor_state(site: Site) -> str:
    ns = site.host("hv")
    return "\n".join(subprocess.run(["ip", "netns", "exec", ns, *tool.split()], check=True, capture_output=True,
                                    text=True).stdout for tool in ("iptables-save", "ip6tables-save", "ipset save"))


def greet_the_hypervisor(site: Site) -> None:
    """Each VM sends a frame, as a running VM does: its bridge learns its MAC on its port."""
    send = "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'hello', ('10.78.0.101', 9))"
    for name in VMS:  # one UDP datagram: the ARP request before it leaves from the VM's MAC
        subprocess.run(["ip", "netns", "exec", site.host(name), sys.executable, "-c", send], check=True)


def test_vmis_are_enforced_on_the_bridge_port_their_mac_is_behind(site):
    web, cli = site.host("web"), site.host("cli")
    greet_the_hypervisor(site)
    kubernetes = {"kubeconfig": str(site.cluster.kubeconfig()), "vmi_antispoof": NO_ANTISPOOF}
    out = site.playbook("playbooks/demo.yml", kubernetes).stdout
    assert "flows, measured exactly as expected" in out
    flows = measured(out)
    assert flows[(web, "10.78.0.1", "tcp/5432")] == flows[(web, "fd78::1", "tcp/5432")] == "allow"
    assert flows[(cli, "10.78.0.1", "tcp/5432")] == flows[(cli, "fd78::1", "tcp/5432")] == "deny"
    assert flows[(cli, "10.78.0.2", "tcp/80")] == "allow"  # web is selected by no policy
    assert "--physdev-in vm-db" in hypervisor_state(site) or "--physdev-out vm-db" in hypervisor_state(site)
    again = site.playbook("playbooks/site.yml", kubernetes).stdout
    assert "changed=0" in again.split("PLAY RECAP")[1].split(site.host("hv"))[1].splitlines()[0]
    # The lookup returns the VMI the compiler enforced on the hypervisor, with kind and node.
    assert [(w["kind"], w["namespace"], w["name"], w["host"], w["node"], w["addresses"])
            for w in site.query("app=db", kubernetes)] == [
        ("VirtualMachineInstance", "shop", "db", site.host("hv"), "hv-1", ["10.78.0.1", "fd78::1"])]


def test_a_vmi_whose_mac_the_hypervisor_has_not_learned_stops_the_run_and_changes_nothing(site):
    stray = vmi("ghost", "52:54:00:78:00:99", ("10.78.0.9", "fd78::9"), ("http", 80))
    before = {name: site.kernel(name) for name in ("hv", *VMS)}
    site.cluster.create_with_status(stray)
    try:
        result = site.playbook("playbooks/site.yml", {"kubeconfig": str(site.cluster.kubeconfig()),
                                                      "vmi_antispoof": NO_ANTISPOOF}, check=False)
    finally:
        site.cluster.delete(stray)
    assert result.returncode != 0
    assert ("kubernetes VirtualMachineInstance shop/ghost: runs on node hv-1, inventory host %s: status.interfaces[].mac: "
            "no MAC of the VMI (52:54:00:78:00:99) is behind a port of the host's bridges" % site.host("hv")) in result.stdout
    assert "no host was changed" in result.stdout
    assert {name: site.kernel(name) for name in ("hv", *VMS)} == before


# ---------------------------------------------------------------- anti-spoofing of VMI ports


def mac_of(vm: str) -> str:
    return VMS[vm][0]


def marker() -> bytes:
    return b"netpol-vmi-" + uuid.uuid4().hex[:12].encode()


def received(site: Site, sender: str, frame: bytes, mark: bytes) -> List[str]:
    """The other VMs whose eth0 received `frame`, sent raw from the sender's eth0. The fence after it
    is an ARP request from the sender's own MAC and address: every check lets it through."""
    fence_mark = mark[:-4] + b"done"
    fence = frames.ethernet(BROADCAST, mac_of(sender), 0x0806, frames.arp(
        1, mac_of(sender), VMS[sender][1], "00:00:00:00:00:00", "10.78.0.254") + fence_mark)
    watchers = {vm: site.host(vm) for vm in VMS if vm != sender}
    return frames.received(site.host(sender), frame, mark, fence, fence_mark, watchers)


def udp4(src_mac: str, src_ip: str, to: str, dst_ip: str = "") -> Tuple[bytes, bytes]:
    mark = marker()
    return frames.ethernet(mac_of(to), src_mac, 0x0800,
                           frames.ipv4_udp(src_ip, dst_ip or VMS[to][1], 4000, 4001, mark)), mark


def udp6(src_mac: str, src_ip: str, to: str, dst_ip: str = "") -> Tuple[bytes, bytes]:
    mark = marker()
    return frames.ethernet(mac_of(to), src_mac, 0x86DD,
                           frames.ipv6_udp(src_ip, dst_ip or VMS[to][2], 4000, 4001, mark)), mark


# cli sends as web to db, which admits web, and from a link-local of nobody's to web (selected by no
# policy): only the layer-2 checks can stop these. The forged MACs last: unchecked, they teach the
# bridge that web's MAC is behind cli's port, and frames to web would go nowhere after them.
FORGERIES = {
    "a link-local the VMI does not report": lambda: udp6(mac_of("cli"), "fe80::bad:1", "web", link_local(mac_of("web"))),
    "web's IPv4 source": lambda: udp4(mac_of("cli"), VMS["web"][1], "db"),
    "web's IPv6 source": lambda: udp6(mac_of("cli"), VMS["web"][2], "db"),
    "web's MAC and IPv4 source": lambda: udp4(mac_of("web"), VMS["web"][1], "db"),
    "web's MAC and IPv6 source": lambda: udp6(mac_of("web"), VMS["web"][2], "db"),
}


def forgeries_received(site: Site) -> Dict[str, List[str]]:
    return {name: received(site, "cli", *forge()) for name, forge in FORGERIES.items()}


def fdb_ports(site: Site, mac: str) -> List[str]:
    lines = subprocess.run(["ip", "netns", "exec", site.host("hv"), "bridge", "fdb", "show", "br", BRIDGE],
                           check=True, capture_output=True, text=True).stdout.splitlines()
    return [line.split()[2] for line in lines if line.startswith(mac + " ") and "permanent" not in line]


def talk(site: Site, sender: str, receiver: str, address: str) -> None:
    """A UDP datagram over sockets: ARP or neighbour discovery resolves the address on the way."""
    text = uuid.uuid4().hex
    listener = subprocess.Popen(["ip", "netns", "exec", site.host(receiver), sys.executable, frames.HERE, "listen",
                                 address, "5353"], stdout=subprocess.PIPE, text=True)
    assert listener.stdout.readline().strip() == "ready"
    subprocess.run(["ip", "netns", "exec", site.host(sender), sys.executable, frames.HERE, "say", address, "5353", text],
                   check=True)
    assert listener.communicate()[0].strip() == text, "%s -> %s %s" % (sender, receiver, address)


def hv_changed(out: str, site: Site) -> str:
    return out.split("PLAY RECAP")[1].split(site.host("hv"))[1].splitlines()[0]


def test_vmi_ports_with_anti_spoofing_drop_forged_frames_and_pass_what_the_vmis_really_send(site):
    kubernetes = {"kubeconfig": str(site.cluster.kubeconfig())}  # vmi_antispoof: full, the default
    site.cluster.create(DB_UDP_FROM_WEB)
    try:
        greet_the_hypervisor(site)
        site.playbook("playbooks/site.yml", dict(kubernetes, vmi_antispoof="off"))
        # Without the checks every forgery arrives, and web's MAC moves to cli's port.
        unchecked = forgeries_received(site)
        assert all(unchecked.values()), unchecked
        assert fdb_ports(site, mac_of("web")) == ["vm-cli"]
        greet_the_hypervisor(site)  # web speaks again: its MAC is back on its own port
        assert fdb_ports(site, mac_of("web")) == ["vm-web"]

        out = site.playbook("playbooks/demo.yml", kubernetes).stdout
        assert "flows, measured exactly as expected" in out  # TCP over IPv4 and IPv6, as the simulator says
        ebtables = subprocess.run(["ip", "netns", "exec", site.host("hv"), "ebtables-save"], check=True,
                                  capture_output=True, text=True).stdout
        assert "-s ! %s -j NETPOL-L2D-" % mac_of("web") in ebtables
        checked = forgeries_received(site)
        assert checked == {name: [] for name in FORGERIES}, checked
        assert fdb_ports(site, mac_of("web")) == ["vm-web"]  # the forged MAC was dropped before the bridge learned it
        # The next run finds every VMI on its own port again: nothing to change on the hypervisor.
        assert "changed=0" in hv_changed(site.playbook("playbooks/site.yml", kubernetes).stdout, site)

        # What the forgeries imitated arrives from web itself, in both families.
        assert received(site, "web", *udp4(mac_of("web"), VMS["web"][1], "db")) == ["db"]
        assert received(site, "web", *udp6(mac_of("web"), VMS["web"][2], "db")) == ["db"]
        # cli's own sources pass: its addresses, its EUI-64 and its stable-privacy link-local (from the VMI's status).
        assert received(site, "cli", *udp4(mac_of("cli"), VMS["cli"][1], "web")) == ["web"]
        assert received(site, "cli", *udp6(mac_of("cli"), VMS["cli"][2], "web")) == ["web"]
        for source in (link_local(mac_of("cli")), STABLE_PRIVACY["cli"]):
            assert received(site, "cli", *udp6(mac_of("cli"), source, "web", link_local(mac_of("web")))) == ["web"]
        # A DHCP discover from 0.0.0.0 passes the layer-2 checks: web receives it (db's ingress admits web only).
        mark = marker()
        discover = frames.ethernet(BROADCAST, mac_of("cli"), 0x0800,
                                   frames.ipv4_udp("0.0.0.0", "255.255.255.255", 68, 67, mark))
        assert received(site, "cli", discover, mark) == ["web"]
        # ARP and neighbour discovery resolve afresh, to global and link-local addresses.
        for vm in VMS:
            subprocess.run(["ip", "netns", "exec", site.host(vm), "ip", "neigh", "flush", "dev", "eth0"], check=True)
        talk(site, "db", "web", VMS["web"][1])
        talk(site, "db", "web", VMS["web"][2])
        talk(site, "cli", "web", "%s%%eth0" % link_local(mac_of("web")))
    finally:
        site.cluster.delete(DB_UDP_FROM_WEB)
