# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""KubeVirt VMIs served by a real kube-apiserver, enforced on the lab hypervisor they run on.

The lab's hypervisor is the cluster's Node hv-1 (netpol_node_name); its VMs are namespaces on its
bridge, each the VMI of the same MAC and addresses. No inventory variable names a VM's port: the
compile step finds it in the hypervisor's bridge forwarding database by the VMI's MAC. Real TCP
over IPv4 and IPv6 between the VMs is compared with the simulator; a VMI whose MAC no bridge there
has learned stops the run, naming VMI, hypervisor and MAC, with nothing applied on any host.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Dict, Iterator

import pytest

from conftest import LAB_PLAYBOOK, REPO, delete_netns, run_playbook, session_prefix, write_lab_inventory
from test_kubernetes_source import Site, measured, policy

sys.path.insert(0, str(REPO / "tests" / "kubernetes"))
from cluster import Cluster, apiserver_binary  # noqa: E402

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
NO_ANTISPOOF = "off"  # this test is about finding the ports; anti-spoofing: test_bridge_antispoof.py


def link_local(mac: str) -> str:
    """The EUI-64 link-local address the kernel gives an interface with this MAC."""
    b = [int(x, 16) for x in mac.split(":")]
    b[0] ^= 2
    return "fe80::%02x%02x:%02xff:fe%02x:%02x%02x" % tuple(b[:3] + b[3:])


def vmi(name: str, mac: str, addresses: tuple, port: tuple, node: str = "hv-1") -> dict:
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": name, "namespace": "shop", "labels": {"app": name}},
            "spec": {"domain": {"devices": {"interfaces": [{"name": "default", "bridge": {}, "ports": [
                {"name": port[0], "port": port[1], "protocol": "TCP"}]}]}}},
            "status": {"phase": "Running", "nodeName": node, "interfaces": [
                {"name": "default", "mac": mac, "ipAddresses": ["%s/24" % addresses[0], "%s/64" % addresses[1],
                                                                "%s/64" % link_local(mac)]}]}}


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
