# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What br_netfilter does with VLANs, measured in a real Linux kernel (a user-mode-linux guest, uml.py).

This machine's kernel builds neither VLAN-aware bridges (vlan_filtering 1) nor 8021q devices; the
guest builds both. One guest run builds the two layouts of docs/bridge.md "VLAN layouts":

    VLAN-aware   hv: bridge brv (vlan_filtering 1), access ports p1 (vm1, PVID 10), p3 (vm3, PVID 10),
                 p2 (vm2, PVID 20: the same subnet on another VLAN), trunk (VLANs 10, 20 tagged) to
                 sw, whose trunk.10 (an 8021q device) is the outside host of VLAN 10.
    per VLAN     hv2: bridges br10, br20 (no vlan_filtering), the 8021q devices uplink.10, uplink.20 of
                 the trunk veth `uplink` as their ports; vm4 on br10; sw2's uplink.10 is the outside host.

The hypervisors filter their bridges per bridge (nf_call_iptables/ip6tables 1, the global switches 0,
as the product does) and hold one FORWARD rule, the kind the product writes (a physdev match of a
bridged packet), dropping TCP and UDP to port 7000. Real TCP (IPv6) and UDP (IPv4) probes on every
path, without the rule, then with it at net.bridge.bridge-nf-filter-vlan-tagged 0 and at 1 (the
product switches it on with the first managed bridge). What counts for the product: at 1, the rule
holds on every path of both layouts; at 0, a frame that is tagged when FORWARD runs (entering by a
trunk, or leaving by one) skips iptables.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from uml import Guest

pytestmark = pytest.mark.integration

PROBE = Path(__file__).parent / "uml" / "probe.py"

TOPOLOGY = r"""
veth() { ip -n $1 link add $2 type veth peer name $4 netns $3; ip -n $1 link set $2 up; ip -n $3 link set $4 up; }
address() { ip -n $1 address add $3 dev $2; ip -n $1 address add $4 dev $2 nodad; }
for ns in hv vm1 vm2 vm3 sw hv2 vm4 sw2; do ip netns add $ns; ip -n $ns link set lo up; done
for ns in hv hv2; do
    ip netns exec $ns sysctl -qw net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0
done
ip -n hv link add brv type bridge vlan_filtering 1 mcast_snooping 0
for vm in 1 2 3; do veth hv p$vm vm$vm eth0; ip -n hv link set p$vm master brv; done
veth hv trunk sw trunk; ip -n hv link set trunk master brv; ip -n hv link set brv up
bridge -n hv vlan add dev p1 vid 10 pvid untagged; bridge -n hv vlan add dev p3 vid 10 pvid untagged
bridge -n hv vlan add dev p2 vid 20 pvid untagged
bridge -n hv vlan add dev trunk vid 10; bridge -n hv vlan add dev trunk vid 20
for port in p1 p2 p3 trunk; do bridge -n hv vlan del dev $port vid 1; done
address vm1 eth0 10.10.0.1/24 fd10::1/64; address vm3 eth0 10.10.0.3/24 fd10::3/64
address vm2 eth0 10.10.0.2/24 fd10::2/64
ip -n sw link add link trunk name trunk.10 type vlan id 10; ip -n sw link set trunk.10 up
address sw trunk.10 10.10.0.200/24 fd10::200/64
for vlan in 10 20; do ip -n hv2 link add br$vlan type bridge mcast_snooping 0; ip -n hv2 link set br$vlan up; done
veth hv2 uplink sw2 uplink
for vlan in 10 20; do
    ip -n hv2 link add link uplink name uplink.$vlan type vlan id $vlan
    ip -n hv2 link set uplink.$vlan master br$vlan up
done
veth hv2 p4 vm4 eth0; ip -n hv2 link set p4 master br10; address vm4 eth0 10.10.0.4/24 fd10::4/64
ip -n sw2 link add link uplink name uplink.10 type vlan id 10; ip -n sw2 link set uplink.10 up
address sw2 uplink.10 10.10.0.200/24 fd10::200/64
for ns in hv hv2; do
    ip netns exec $ns sh -c 'for b in /sys/class/net/br*/bridge; do echo 1 > $b/nf_call_iptables; echo 1 > $b/nf_call_ip6tables; done'
done
echo "VLANS $(bridge -n hv -j vlan show)"
"""

PROBES = r"""
rule() {  # -I or -D: the product's kind of FORWARD rule, in both hypervisors and both families
    for ns in hv hv2; do for tool in iptables ip6tables; do for protocol in tcp udp; do
        ip netns exec $ns $tool $1 FORWARD -m physdev --physdev-is-bridged -p $protocol --dport 7000 -j DROP
    done; done; done
}
knob() { for ns in hv hv2; do ip netns exec $ns sysctl -qw net.bridge.bridge-nf-filter-vlan-tagged=$1; done; }
paths() {
    python3 %(probe)s $1 <<'END'
access-to-access vm1 vm3 udp 10.10.0.3
access-to-access vm1 vm3 tcp fd10::3
trunk-to-access sw vm1 udp 10.10.0.1
trunk-to-access sw vm1 tcp fd10::1
access-to-trunk vm1 sw udp 10.10.0.200
access-to-trunk vm1 sw tcp fd10::200
other-vlan vm1 vm2 udp 10.10.0.2
other-vlan vm1 vm2 tcp fd10::2
8021q-to-bridge sw2 vm4 udp 10.10.0.4
8021q-to-bridge sw2 vm4 tcp fd10::4
bridge-to-8021q vm4 sw2 udp 10.10.0.200
bridge-to-8021q vm4 sw2 tcp fd10::200
END
}
knob 1; paths no-rule
rule -I
knob 0; paths knob-0
knob 1; paths knob-1
"""


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    guest = Guest.boot_or_skip(tmp_path_factory.mktemp("uml-vlan"))
    result = guest.run(TOPOLOGY + PROBES % {"probe": PROBE}, timeout=600)
    assert result.rc == 0, result.output
    found = {}
    for condition, path, protocol, verdict in re.findall(r"^PROBE (\S+) (\S+) (\S+) (\S+)$", result.output, re.M):
        found.setdefault(condition, {}).setdefault(path, {})[protocol] = verdict
    return found, result.output


def passes(found, condition, *paths):
    return {path: found[condition][path] for path in paths}


BOTH = {"udp": "got", "tcp": "got"}
NEITHER = {"udp": "nothing", "tcp": "nothing"}
CONNECTED = ("access-to-access", "trunk-to-access", "access-to-trunk", "8021q-to-bridge", "bridge-to-8021q")


def test_without_a_rule_every_path_of_a_vlan_passes_and_another_vlan_is_out_of_reach(measured):
    found, output = measured
    assert passes(found, "no-rule", *CONNECTED) == {path: BOTH for path in CONNECTED}, output
    assert found["no-rule"]["other-vlan"] == NEITHER, output  # same subnet, VLAN 20: layer 2 keeps it apart


def test_with_the_vlan_tagged_knob_on_a_forward_rule_holds_on_every_path_of_both_layouts(measured):
    found, output = measured
    assert passes(found, "knob-1", *CONNECTED) == {path: NEITHER for path in CONNECTED}, output


def test_with_the_knob_off_frames_tagged_at_forward_skip_iptables(measured):
    """Access to access leaves untagged (the bridge strips the PVID before FORWARD) and the 8021q
    devices untag before the bridge: the rule holds. Trunk frames are tagged in FORWARD: they pass."""
    found, output = measured
    assert passes(found, "knob-0", *CONNECTED) == {
        "access-to-access": NEITHER, "trunk-to-access": BOTH, "access-to-trunk": BOTH,
        "8021q-to-bridge": NEITHER, "bridge-to-8021q": NEITHER}, output
