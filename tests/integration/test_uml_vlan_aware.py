# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The VLAN-aware layout (Harvester's: one vlan_filtering bridge per cluster network, VMs on access
ports, a tagged trunk uplink) enforced by the playbooks in a user-mode-linux guest (uml.py) on the
kernel `make uml-kernel` builds (conntrack zones, nf_tables for every family).

inventories/harvester as `make lab` builds it, rewired on each hypervisor: its bridges vlan10 and
vlan20 are replaced by one bridge `brv` (vlan_filtering 1) whose VM ports are access ports of
VLAN 10 or 20, whose `trunk` veth to the switch carries both VLANs tagged (the switch's 8021q
devices `HV-t.10`/`HV-t.20` on its VLAN 10 and VLAN 20 bridges), and whose VLAN 10 device `brv.10`
holds the hypervisor's own addresses. Beside the VMs, two unmanaged namespaces on VLAN 20 reuse VLAN
10's addresses: u1 on hvl-hv1's brv (access VLAN 20) has a-api's, u2 behind the switch has b-web's.
Two more unmanaged neighbours, x and y, are on hvl-hv1's brv by ports t2 and t3 whose PVID is VLAN 10
and which carry VLAN 30 (no managed VM) tagged: x on both VLANs with one address, y on VLAN 30 with
b-web's; the same 5-tuple x -> y in VLAN 30 must not open x -> b-web in VLAN 10.
The hypervisors have foreign rules in filter, nat and raw (both families) and a foreign set.
"""

from __future__ import annotations

import re

import pytest

from conftest import REPO
from test_enforce_e2e import FAST
from uml import Guest

pytestmark = pytest.mark.integration

HYPERVISORS = ("hvl-hv1", "hvl-hv2")

SCRIPT = r"""
R=%(repo)s
export PATH=$R/.venv/bin:$PATH ANSIBLE_CONFIG=$R/ansible.cfg ANSIBLE_COLLECTIONS_PATH=$R/collection ANSIBLE_NOCOLOR=1
cd $R
. $R/tests/integration/uml/snippets.sh  # foreign_firewall, state
INV=inventories/harvester
ansible-playbook -i $INV playbooks/lab.yml > /run/work/lab.out 2>&1 || { echo "lab failed"; exit 1; }
for HV in hvl-hv1 hvl-hv2; do
    ip -n $HV link add brv type bridge vlan_filtering 1 mcast_snooping 0
    for vlan in 10 20; do
        for port in $(ip -n $HV -o link show master vlan$vlan | awk -F': ' '{print $2}' | cut -d@ -f1); do
            case $port in
                vm-*) ip -n $HV link set $port master brv; bridge -n $HV vlan del dev $port vid 1
                      bridge -n $HV vlan add dev $port vid $vlan pvid untagged;;
                *) ip -n $HV link del $port;;  # the lab's uplinks
            esac
        done
    done
    addresses=$(ip -n $HV -o address show dev vlan10 scope global | awk '{print $4}')
    routes4=$(ip -n $HV -4 route show default | sed 's/ dev vlan10.*//'); routes6=$(ip -n $HV -6 route show default | sed 's/ dev vlan10.*//')
    ip -n $HV link del vlan10; ip -n $HV link del vlan20
    ip -n $HV link add trunk type veth peer name $HV-t netns hvl-sw
    ip -n $HV link set trunk master brv; bridge -n $HV vlan del dev trunk vid 1
    for vlan in 10 20; do bridge -n $HV vlan add dev trunk vid $vlan; done
    ip -n $HV link set trunk up; ip -n $HV link set brv up; ip -n hvl-sw link set $HV-t up
    for vlan in 10 20; do
        switch_bridge=vlan20; [ $vlan = 10 ] && switch_bridge=br0
        ip -n hvl-sw link add link $HV-t name $HV-t.$vlan type vlan id $vlan
        ip -n hvl-sw link set $HV-t.$vlan master $switch_bridge up
    done
    bridge -n $HV vlan add dev brv vid 10 self
    ip -n $HV link add link brv name brv.10 type vlan id 10; ip -n $HV link set brv.10 up
    for address in $addresses; do ip -n $HV address add $address dev brv.10 nodad; done
    [ -n "$routes4" ] && ip -n $HV -4 route add $routes4 dev brv.10; [ -n "$routes6" ] && ip -n $HV -6 route add $routes6 dev brv.10
    echo "VLANS $HV $(bridge -n $HV -j vlan show)"
done
ip netns add u1; ip netns add u2; ip -n u1 link set lo up; ip -n u2 link set lo up
ip -n hvl-hv1 link add u1p type veth peer name eth0 netns u1; ip -n hvl-hv1 link set u1p master brv up
bridge -n hvl-hv1 vlan del dev u1p vid 1; bridge -n hvl-hv1 vlan add dev u1p vid 20 pvid untagged
ip -n hvl-sw link add u2p type veth peer name eth0 netns u2; ip -n hvl-sw link set u2p master vlan20 up
for u in "u1 10.10.0.12 fd10::12" "u2 10.10.0.21 fd10::21"; do set -- $u
    ip -n $1 link set eth0 up; ip -n $1 address add $2/24 dev eth0; ip -n $1 address add $3/64 dev eth0 nodad
done
# t2 and t3 on hvl-hv1's brv: ports of unmanaged neighbours x and y, each with PVID 10 (a managed
# VLAN) untagged and VLAN 30 (no managed VM) tagged; x is on VLAN 10 (eth0) and on VLAN 30 (eth0.30)
# with one address, y on VLAN 30 only, with b-web's addresses
for n in "x t2 10.10.0.99 fd10::99" "y t3 10.10.0.21 fd10::21"; do set -- $n
    ip netns add $1; ip -n $1 link set lo up
    ip -n hvl-hv1 link add $2 type veth peer name eth0 netns $1; ip -n hvl-hv1 link set $2 master brv up
    bridge -n hvl-hv1 vlan del dev $2 vid 1; bridge -n hvl-hv1 vlan add dev $2 vid 10 pvid untagged
    bridge -n hvl-hv1 vlan add dev $2 vid 30
    ip -n $1 link set eth0 up; ip -n $1 link add link eth0 name eth0.30 type vlan id 30; ip -n $1 link set eth0.30 up
    ip -n $1 address add $3/24 dev eth0.30; ip -n $1 address add $4/64 dev eth0.30 nodad
done
ip -n x address add 10.10.0.99/24 dev eth0; ip -n x address add fd10::99/64 dev eth0 nodad
for n in x y; do  # ARP answers only for the receiving device's addresses: y's eth0 (VLAN 10) has none of b-web's
    ip netns exec $n sysctl -qw net.ipv4.conf.all.arp_ignore=1
done
echo "T2 $(bridge -n hvl-hv1 -j vlan show dev t2)"
foreign_firewall hvl-hv1 hvl-hv2
udp() {  # udp NS_FROM NS_TO ADDRESS: one datagram 5555 -> 7000, "arrived" or "lost"
    ip netns exec $2 python3 -c "
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 7000)); s.settimeout(3)
try:
    data, peer = s.recvfrom(100); s.sendto(b'reply', peer); print('arrived')
except socket.timeout:
    print('lost')" > /run/work/udp.server &
    sleep 1
    ip netns exec $1 python3 -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 5555)); s.settimeout(2)
s.sendto(b'hello', ('$3', 7000))
try:
    s.recvfrom(100)
except socket.timeout:
    pass"
    wait; cat /run/work/udp.server
}
udp_by() {  # udp_by NS_FROM NS_TO ADDRESS DEVICE: udp over IPv4 or IPv6, sent by DEVICE
    ip netns exec $2 python3 -c "
import socket
family = socket.AF_INET6 if ':' in '$3' else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM); s.bind(('::' if family == socket.AF_INET6 else '0.0.0.0', 7000))
s.settimeout(3)
try:
    data, peer = s.recvfrom(100); s.sendto(b'reply', peer); print('arrived')
except socket.timeout:
    print('lost')" > /run/work/udp.server &
    sleep 1
    ip netns exec $1 python3 -c "
import socket
family = socket.AF_INET6 if ':' in '$3' else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b'$4')
s.bind(('::' if family == socket.AF_INET6 else '0.0.0.0', 5555)); s.settimeout(2)
s.sendto(b'hello', ('$3', 7000))
try:
    s.recvfrom(100)
except socket.timeout:
    pass"
    wait; cat /run/work/udp.server
}
state hvl-hv1 hvl-hv2 > /run/work/before
ansible-playbook -i $INV playbooks/site.yml --check --diff %(fast)s > /run/work/check.out 2>&1; echo "check rc $?"
state hvl-hv1 hvl-hv2 > /run/work/after-check
ansible-playbook -i $INV playbooks/site.yml %(fast)s > /run/work/site.out 2>&1; echo "site rc $?"
ansible-playbook -i $INV playbooks/demo.yml %(fast)s -e netpol_verify_report_file=/run/work/report.html \
    > /run/work/demo.out 2>&1; echo "demo rc $?"  # site.yml again, then verify against the simulator
echo "U-FLOW $(udp u1 u2 10.10.0.21)"
echo "SAME-TUPLE $(udp hvl-a-api hvl-b-web 10.10.0.21)"
for address in 10.10.0.21 fd10::21; do  # the same 5-tuple in VLAN 30 (x to y), then in VLAN 10 (x to b-web)
    echo "X-VLAN30 $address $(udp_by x y $address eth0.30)"
    echo "X-VLAN10 $address $(udp_by x hvl-b-web $address eth0)"
done
for family in ipv4 ipv6; do
    ip netns exec hvl-hv1 conntrack -L -f $family -p udp --dport 7000 2>/dev/null | sed 's/^/CONNTRACK /'
done
for HV in hvl-hv1 hvl-hv2; do
    for tool in iptables-save ip6tables-save; do ip netns exec $HV $tool -t raw | sed "s/^/RAW $HV /"; done
    ip netns exec $HV ebtables-save -t nat | sed "s/^/EBT $HV /"
done
ansible-playbook -i $INV playbooks/remove.yml %(fast)s > /run/work/remove.out 2>&1; echo "remove rc $?"
state hvl-hv1 hvl-hv2 > /run/work/after-remove
"""


@pytest.fixture(scope="module")
def enforced(tmp_path_factory):
    work = tmp_path_factory.mktemp("uml-vlan-aware")
    guest = Guest.boot_or_skip(work)  # the built kernel: its trial boot checks conntrack zones too
    result = guest.run(SCRIPT % {"repo": REPO, "fast": " ".join(FAST)}, timeout=2400)
    assert result.rc == 0, result.output + (work / "lab.out").read_text()
    return work, result.output


def recap(text: str) -> dict:
    return {m.group(1): (int(m.group(2)), int(m.group(3)))
            for m in re.finditer(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", text, re.M)}


def test_the_hypervisors_have_one_vlan_aware_bridge_with_access_ports_and_a_tagged_trunk(enforced):
    _work, output = enforced
    for hypervisor in HYPERVISORS:
        vlans = re.search(r"^VLANS %s (.*)$" % hypervisor, output, re.M).group(1)
        assert '{"ifname":"trunk","vlans":[{"vlan":10},{"vlan":20}]}' in vlans, vlans
        assert re.search(r'"ifname":"vm-[ab]-\w+","vlans":\[\{"vlan":(10|20),"flags":\["PVID","Egress Untagged"\]\}\]',
                         vlans), vlans


def test_check_mode_shows_the_zone_and_mark_rules_and_changes_nothing(enforced):
    work, output = enforced
    check = (work / "check.out").read_text()
    assert "check rc 0" in output, check
    assert "netpol zone of VLAN 10 on bridge brv: frames of non-VM ports, by mark" in check, check
    assert "netpol zone of VLAN 20 on bridge brv: port vm-b-db" in check, check
    assert re.search(r"\+-A NETPOL-VLAN-MARK -p 802_1Q -i trunk --vlan-id 20 --vlan-encap 86DD -j mark --mark-or 0x[0-9a-f]+ "
                     r"--mark-target CONTINUE", check), check
    assert (work / "after-check").read_text() == (work / "before").read_text()


def test_a_second_run_changes_nothing_and_every_flow_is_measured_as_the_simulator_expects(enforced):
    work, output = enforced
    site, demo = ((work / name).read_text() for name in ("site.out", "demo.out"))
    assert "site rc 0" in output, site
    assert "demo rc 0" in output and recap(demo) and all(changed == 0 for changed, _failed in recap(demo).values()), demo
    assert re.search(r"\d+ flows, measured exactly as expected", demo), demo


def test_the_zones_are_per_vlan_so_a_tuple_established_on_vlan_20_does_not_open_it_on_vlan_10(enforced):
    _work, output = enforced
    assert "U-FLOW arrived" in output  # unmanaged neighbours on VLAN 20, with VLAN 10's addresses
    assert "SAME-TUPLE lost" in output  # a-api -> b-web udp/7000: tenant b's ingress denies it, a new flow in VLAN 10
    vlan20 = re.search(r'^RAW hvl-hv1 .*"netpol zone of VLAN 20 on bridge brv: port vm-b-db" -j CT --zone (\d+)$',
                       output, re.M).group(1)
    zones = re.findall(r"^CONNTRACK .*src=10\.10\.0\.12 dst=10\.10\.0\.21 sport=5555 dport=7000 .*zone=(\d+)",
                       output, re.M)
    # hvl-hv1 holds the tuple once, replied, in VLAN 20's zone; in VLAN 10's zone it was a new flow,
    # dropped before conntrack confirmed it (with one zone per bridge it would have been ESTABLISHED)
    assert zones == [vlan20], output


def test_an_unmanaged_vlan_on_a_port_whose_pvid_is_managed_never_shares_that_vlans_zone(enforced):
    _work, output = enforced
    assert re.search(r'^T2 .*"vlans":\[\{"vlan":10,"flags":\["PVID","Egress Untagged"\]\},\{"vlan":30\}\]', output, re.M)
    vlan10 = int(re.search(r'^RAW hvl-hv1 .*"netpol zone of VLAN 10 on bridge brv: [^"]*" -j CT --zone (\d+)$',
                           output, re.M).group(1))
    for source, destination in (("10.10.0.99", "10.10.0.21"), ("fd10::99", "fd10::21")):
        # x -> y in VLAN 30 (tagged over t2 and t3) is answered ...
        assert "X-VLAN30 %s arrived" % destination in output, output
        entries = re.findall(r"^CONNTRACK .*src=%s dst=%s sport=5555 dport=7000 .*$" % (source, destination),
                             output, re.M)
        zones = [int(re.search(r"zone=(\d+)", e).group(1)) if "zone=" in e else 0 for e in entries]
        # ... and held in zone 0, with the frames of every VLAN without managed VMs: not in VLAN 10's
        # zone, which t2's and t3's PVID would have given it
        assert zones == [0], (vlan10, entries)
        # so the same 5-tuple in VLAN 10 (untagged over t2, to b-web, whose tenant-b ingress denies x)
        # is a new connection there and dropped, never ESTABLISHED by VLAN 30's entry
        assert "X-VLAN10 %s lost" % destination in output, output


def test_the_raw_and_ebtables_rules_zone_by_vlan_and_clear_the_mark(enforced):
    _work, output = enforced
    raw = [line for line in output.splitlines() if line.startswith("RAW hvl-hv1 -A NETPOL-BR-ZONES")]
    marked = {vlan: re.search(r"--mark (0x[0-9a-f]+)/0xff .*VLAN %d on bridge brv: frames of non-VM ports" % vlan,
                              "\n".join(raw)).group(1) for vlan in (10, 20)}
    assert [r for r in raw if "--physdev-in vm-b-db" in r and "VLAN 20 on bridge brv" in r], raw
    assert not [r for r in raw if re.search(r"--physdev-in (u1p|t2|t3|trunk) ", r)], raw  # no VM's: by mark only
    assert [r for r in raw if r.endswith("-j MARK --set-xmark 0x0/0xff")], raw
    ebt = [line[len("EBT hvl-hv1 -A NETPOL-VLAN-MARK "):] for line in output.splitlines()
           if line.startswith("EBT hvl-hv1 -A NETPOL-VLAN-MARK ")]
    mark = " -j mark --mark-or %s --mark-target CONTINUE"
    for port, vlan in (("u1p", 20), ("t2", 10), ("t3", 10)):  # untagged frames by the PVID, tagged by their VLAN
        assert "-p IPv4 -i %s%s" % (port, mark % marked[vlan]) in ebt and "-p IPv6 -i %s%s" % (port, mark % marked[vlan]) in ebt
        assert "-p 802_1Q -i %s --vlan-id %d --vlan-encap 0800%s" % (port, vlan, mark % marked[vlan]) in ebt, ebt
    assert "-p 802_1Q -i trunk --vlan-id 20 --vlan-encap 86DD%s" % (mark % marked[20]) in ebt, ebt
    assert not [r for r in ebt if "--vlan-id 30 " in r], ebt  # VLAN 30 has no managed VM: no mark, zone 0


def test_remove_leaves_the_hypervisors_byte_identical(enforced):
    work, output = enforced
    assert "remove rc 0" in output, (work / "remove.out").read_text()
    before = (work / "before").read_text()
    for foreign in ("-A FORWARD -s 192.0.2.7/32 -j ACCEPT", "-A PREROUTING -s 2001:db8::7/128 -j NOTRACK",
                    "create foreign-set hash:ip", "/sys/class/net/brv/bridge/nf_call_iptables:0"):
        assert foreign in before, before  # what state() of snippets.sh dumps
    assert (work / "after-remove").read_text() == before
