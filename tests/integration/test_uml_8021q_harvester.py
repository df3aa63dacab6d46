# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Harvester-like lab with 8021q trunk uplinks, enforced end to end by the playbooks in a
user-mode-linux guest (uml.py: this machine's kernel has no 8021q devices; the guest's has them and
conntrack zones, so the bridge dataplane applies there as on a real hypervisor).

inventories/harvester as `make demo` builds it, except that each hypervisor's two uplink veths are
replaced by one trunk veth to the switch, tagged: `trunk.10` and `trunk.20` (8021q devices) are the
ports of the bridges vlan10 and vlan20, and the switch ends are 8021q devices on its bridges too. So
every flow between the hypervisors, to the outside host and through the router between the VLANs
crosses a trunk as 802.1Q frames. Every host also serves UDP 7000 (netpol_verify_extra_ports), so
the probes are TCP and UDP over IPv4 and IPv6. The hypervisors have a firewall of their own in
filter, nat and raw (both families), ebtables rules of a bridge CNI and a foreign set.

One guest boot: build the lab, measure who reaches whom (no policy yet), enforce site.yml, then
demo.yml (enforce again, measure, compare with the simulator's matrix).
"""

from __future__ import annotations

import json
import re
from typing import Dict, Tuple

import pytest

from conftest import REPO
from test_enforce_e2e import FAST
from uml import Guest

pytestmark = pytest.mark.integration

HYPERVISORS = ("hvl-hv1", "hvl-hv2")
UDP = ("-e", "'%s'" % json.dumps({"netpol_verify_extra_ports": [{"port": 7000, "protocol": "UDP"}]}))
# The guest has one CPU for every namespace's probes and listeners, on a machine that runs other suites:
# a probe may wait longer than the default second before its answer is in (a blocked flow costs it once).
PROBE_TIMEOUT = ("-e", "netpol_verify_timeout=5")

# The lab of inventories/harvester with one tagged trunk per hypervisor, and a foreign firewall on each.
TRUNK_LAB = r"""
R=%(repo)s
export PATH=$R/.venv/bin:$PATH ANSIBLE_CONFIG=$R/ansible.cfg ANSIBLE_COLLECTIONS_PATH=$R/collection ANSIBLE_NOCOLOR=1
cd $R
. $R/tests/integration/uml/snippets.sh  # foreign_firewall, state
ansible-playbook -i inventories/harvester playbooks/lab.yml > /run/work/lab.out 2>&1 || { echo "lab failed"; exit 1; }
for HV in hvl-hv1 hvl-hv2; do
    for bridge in vlan10 vlan20; do  # the lab's uplinks: every port of the bridge that is not a VM's
        for port in $(ip -n $HV -o link show master $bridge | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -v '^vm-'); do
            ip -n $HV link del $port
        done
    done
    ip -n $HV link add trunk type veth peer name $HV-t netns hvl-sw
    ip -n $HV link set trunk up; ip -n hvl-sw link set $HV-t up
    for vlan in 10 20; do
        switch_bridge=vlan20; [ $vlan = 10 ] && switch_bridge=br0
        ip -n $HV link add link trunk name trunk.$vlan type vlan id $vlan
        ip -n $HV link set trunk.$vlan master vlan$vlan up
        ip -n hvl-sw link add link $HV-t name $HV-t.$vlan type vlan id $vlan
        ip -n hvl-sw link set $HV-t.$vlan master $switch_bridge up
    done
    for bridge in vlan10 vlan20; do
        echo "PORTS $HV $bridge $(ip -n $HV -o link show master $bridge | awk -F': ' '{print $2}' | cut -d@ -f1 | tr '\n' ' ')"
    done
done
foreign_firewall hvl-hv1 hvl-hv2
for HV in hvl-hv1 hvl-hv2; do
    for rule in "-t nat -N CNI-HOSTPORT" "-t nat -A CNI-HOSTPORT --among-src 02:00:0a:00:00:09 -j ACCEPT" \
                "-t nat -A PREROUTING -j CNI-HOSTPORT" "-A FORWARD -i cni0 -j DROP"; do  # a bridge CNI's
        ip netns exec $HV ebtables $rule
    done
done
"""

SCRIPT = TRUNK_LAB + r"""
dump() {  # each hypervisor's state() (snippets.sh) and all its net.* sysctls, under "== HV" headers
    for HV in hvl-hv1 hvl-hv2; do
        echo "== $HV"; state $HV; ip netns exec $HV sysctl -a -r '^net\.' 2>/dev/null
    done
}
dump > /run/work/before
ansible-playbook -i inventories/harvester playbooks/verify.yml %(fast)s %(udp)s %(timeout)s \
    -e netpol_verify_report_file= -e netpol_verify_matrix_file=/run/work/open.json > /run/work/open.out 2>&1
echo "open rc $?"
ansible-playbook -i inventories/harvester playbooks/site.yml %(fast)s %(udp)s > /run/work/site.out 2>&1
echo "site rc $?"
ansible-playbook -i inventories/harvester playbooks/demo.yml %(fast)s %(udp)s %(timeout)s \
    -e netpol_verify_report_file= -e netpol_verify_matrix_file=/run/work/enforced.json > /run/work/demo.out 2>&1
echo "demo rc $?"
dump > /run/work/after
"""


@pytest.fixture(scope="module")
def enforced(tmp_path_factory):
    work = tmp_path_factory.mktemp("uml-8021q-harvester")
    guest = Guest.boot_or_skip(work)
    # The guest took 1,375 s and 1,464 s at load 15-23 on 2 cores (beside the other guest tests), and
    # over 1,500 s once: a bound for a hung guest, not a measurement.
    result = guest.run(SCRIPT % {"repo": REPO, "fast": " ".join(FAST), "udp": " ".join(UDP),
                                 "timeout": " ".join(PROBE_TIMEOUT)}, timeout=2700)
    assert result.rc == 0, result.output + (work / "lab.out").read_text()
    return work, result.output


def ran(work, output: str, name: str) -> str:
    """The playbook's output, asserting it succeeded."""
    text = (work / ("%s.out" % name)).read_text()
    assert re.search(r"^%s rc 0$" % name, output, re.M), text[-6000:]
    return text


def recap(text: str) -> Dict[str, Tuple[int, int]]:
    """host -> (changed, failed) of the PLAY RECAP."""
    return {host: (int(changed), int(failed)) for host, changed, failed in
            re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", text, re.M)}


def reachable(work, name: str) -> Dict[Tuple[str, str, str], bool]:
    """(src, dst address, protocol/port) -> reachable, from a measured matrix file."""
    return {(f["src"], f["address"], "%s/%s" % (f["protocol"], f["port"])): f["reachable"]
            for f in json.loads((work / ("%s.json" % name)).read_text())}


def sections(text: str) -> Dict[str, str]:
    return dict(re.findall(r"^== (\S+)\n(.*?)(?=^== |\Z)", text, re.M | re.S))


def foreign(text: str) -> str:
    """A hypervisor's state without what the collection owns (its chains, rules and sets, all named
    netpol; the bridge flags and the VLAN knob it switches), comments, counters and the conntrack
    entry count (traffic moves those)."""
    kept = [line for line in text.splitlines()
            if "netpol" not in line.lower() and not line.startswith(("#", "/sys/class/net/", "net.netfilter.nf_conntrack_count"))
            and "bridge-nf-filter-vlan-tagged" not in line]
    return re.sub(r"\[\d+:\d+\]", "[-:-]", "\n".join(kept))


def test_every_vlan_bridges_uplink_is_an_8021q_device_of_the_one_trunk(enforced):
    _work, output = enforced
    for hypervisor in HYPERVISORS:
        for vlan in ("10", "20"):
            ports = re.search(r"^PORTS %s vlan%s (.*)$" % (hypervisor, vlan), output, re.M).group(1).split()
            assert [p for p in ports if not p.startswith("vm-")] == ["trunk.%s" % vlan], output


def test_the_first_run_enforces_and_the_second_changes_nothing(enforced):
    work, output = enforced
    first, second = recap(ran(work, output, "site")), recap(ran(work, output, "demo"))
    for hypervisor in HYPERVISORS:
        assert first[hypervisor][0] > 0 and first[hypervisor][1] == 0
    assert second and all(counts == (0, 0) for counts in second.values()), second


def test_real_tcp_and_udp_over_ipv4_and_ipv6_are_measured_exactly_as_the_simulator_expects(enforced):
    work, output = enforced
    demo = ran(work, output, "demo")
    measured = re.search(r"(\d+) flows, measured exactly as expected", demo)
    assert measured, demo[-6000:]
    flows = reachable(work, "enforced")
    assert int(measured.group(1)) == len(flows)
    for protocol in ("tcp", "udp"):
        for family in (".", ":"):
            assert [key for key in flows if key[2].startswith(protocol) and family in key[1]]


@pytest.mark.parametrize("src, address, port, before, after", [
    # the outside host, behind the switch: public http of tenant a's web VM, nothing else of tenant a
    ("hvl-ext", "10.10.0.11", "tcp/80", True, True),
    ("hvl-ext", "fd10::11", "tcp/80", True, True),
    ("hvl-ext", "10.10.0.12", "tcp/8080", True, False),
    ("hvl-ext", "fd10::12", "udp/7000", True, False),
    # tenant a across the hypervisors (hv2 -> trunk.10 -> switch -> trunk.10 -> hv1): same tenant passes
    ("hvl-a-api", "10.10.0.11", "udp/7000", True, True),
    ("hvl-a-api", "fd10::11", "tcp/80", True, True),
    # tenant a's database: TCP 5432 from the backend tier only (routed from VLAN 10 to VLAN 20 by the switch)
    ("hvl-a-api", "10.20.0.13", "tcp/5432", True, True),
    ("hvl-a-api", "fd20::13", "udp/7000", True, False),
    ("hvl-a-web", "fd20::13", "tcp/5432", True, False),
    # tenant b on hv1, VLAN 10 to VLAN 20 through the router: its own tenant passes, tenant a does not
    ("hvl-b-web", "10.20.0.22", "udp/7000", True, True),
    ("hvl-b-web", "fd20::22", "tcp/5432", True, True),
    ("hvl-a-web", "10.20.0.22", "udp/7000", True, False),
    ("hvl-a-api", "fd20::22", "tcp/5432", True, False),
])
def test_across_the_tagged_trunks_what_the_policies_deny_is_blocked_and_what_they_allow_passes(
        enforced, src, address, port, before, after):
    work, _output = enforced
    assert reachable(work, "open")[(src, address, port)] is before
    assert reachable(work, "enforced")[(src, address, port)] is after


def test_the_bridges_filter_bridged_and_tagged_frames(enforced):
    work, _output = enforced
    after = sections((work / "after").read_text())
    for hypervisor in HYPERVISORS:
        for bridge in ("vlan10", "vlan20"):
            for flag in ("nf_call_iptables", "nf_call_ip6tables"):
                assert "/sys/class/net/%s/bridge/%s:1" % (bridge, flag) in after[hypervisor]
        assert "net.bridge.bridge-nf-filter-vlan-tagged = 1" in after[hypervisor]
        assert "-j CT --zone" in after[hypervisor]  # conntrack zones per bridge


def test_foreign_rules_sets_and_sysctls_stay_byte_identical(enforced):
    work, _output = enforced
    before, after = sections((work / "before").read_text()), sections((work / "after").read_text())
    for hypervisor in HYPERVISORS:
        for mark in ("-A FORWARD -s 192.0.2.7/32 -j ACCEPT", "-A POSTROUTING -s 2001:db8::7/128 -j RETURN",
                     "-A PREROUTING -s 192.0.2.7/32 -j NOTRACK", "-A CNI-HOSTPORT --among-src 2:0:a:0:0:9",
                     "create foreign-set", "net.ipv4.ip_forward = "):
            assert mark in before[hypervisor]
        assert "NETPOL" in after[hypervisor]
        assert foreign(after[hypervisor]) == foreign(before[hypervisor])
