# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Harvester-like lab with 8021q uplinks, enforced by the playbooks in a user-mode-linux guest
(uml.py) booted on Debian's own linux.uml, whose kernel has no conntrack zones: the bridge
dataplane cannot be applied there, and the run must say so and leave each hypervisor exactly as it
was (its transaction undone on a real kernel's refusal, not a shim's).

inventories/harvester as `make demo` builds it, except that each hypervisor's two uplink veths are
replaced by one trunk veth to the switch, tagged: `trunk.10` and `trunk.20` (8021q devices) are the
ports of the bridges vlan10 and vlan20, and the switch ends are 8021q devices on its bridges too.
The guest kernel refuses `CT --zone` (CONFIG_NF_CONNTRACK_ZONES is not set), which the product puts in
raw PREROUTING for every managed bridge (docs/bridge.md "Conntrack zones per L2 domain"). The
hypervisors have foreign rules in filter, nat and raw (both families) and a foreign set: all
byte-identical after the failed run, as are the bridge flags and net.bridge sysctls.
"""

from __future__ import annotations

import re

import pytest

from conftest import REPO
from test_enforce_e2e import FAST
from uml import DEBIAN_KERNEL, Guest

pytestmark = pytest.mark.integration

HYPERVISORS = ("hvl-hv1", "hvl-hv2")

SCRIPT = r"""
R=%(repo)s
export PATH=$R/.venv/bin:$PATH ANSIBLE_CONFIG=$R/ansible.cfg ANSIBLE_COLLECTIONS_PATH=$R/collection ANSIBLE_NOCOLOR=1
cd $R
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
    echo "PORTS $HV $(ip -n $HV -o link show master vlan10 | awk -F': ' '{print $2}' | cut -d@ -f1 | tr '\n' ' ')"
done
for HV in hvl-hv1 hvl-hv2; do  # a firewall of the hypervisor's own, in every table the product uses
    for tool in "iptables 192.0.2.7/32" "ip6tables 2001:db8::7/128"; do
        set -- $tool
        ip netns exec $HV $1 -A FORWARD -s $2 -j ACCEPT
        ip netns exec $HV $1 -t nat -A POSTROUTING -s $2 -j RETURN
        ip netns exec $HV $1 -t raw -A PREROUTING -s $2 -j NOTRACK
    done
    ip netns exec $HV ipset create foreign-set hash:ip
done
state() {  # without comments and counters (the guest's own router solicitations count in OUTPUT)
    for HV in hvl-hv1 hvl-hv2; do
        for tool in iptables-save ip6tables-save ebtables-save "ipset save"; do
            ip netns exec $HV $tool | grep -v '^#' | sed 's/ \[[0-9]*:[0-9]*\]$//'
        done
        ip netns exec $HV sh -c 'grep -H . /sys/class/net/vlan*/bridge/nf_call_ip*tables /proc/sys/net/bridge/*'
    done
}
state > /run/work/before
ip netns add zones; ip netns exec zones iptables -t raw -A PREROUTING -j CT --zone 5 2>&1 | sed 's/^/ZONE /'
ansible-playbook -i inventories/harvester playbooks/site.yml %(fast)s > /run/work/site.out 2>&1
echo "site rc $?"
state > /run/work/after
"""


@pytest.fixture(scope="module")
def enforced(tmp_path_factory):
    work = tmp_path_factory.mktemp("uml-8021q")
    guest = Guest.boot_or_skip(work, DEBIAN_KERNEL)
    result = guest.run(SCRIPT % {"repo": REPO, "fast": " ".join(FAST)}, timeout=900)
    assert result.rc == 0, result.output + (work / "lab.out").read_text()
    return work, result.output


def test_the_vlan_bridges_uplinks_are_8021q_devices_of_one_trunk(enforced):
    _work, output = enforced
    for hypervisor in HYPERVISORS:
        ports = re.search(r"^PORTS %s (.*)$" % hypervisor, output, re.M).group(1).split()
        assert "trunk.10" in ports and not [p for p in ports if p not in ("trunk.10",) and not p.startswith("vm-")]


def test_without_conntrack_zones_the_run_fails_naming_the_raw_table_and_leaves_the_hypervisors_as_they_were(enforced):
    work, output = enforced
    assert "ZONE iptables: Operation not supported." in output  # what the kernel says to CT --zone
    site = (work / "site.out").read_text()
    assert re.search(r"^site rc [1-9]", output, re.M), site
    for hypervisor in HYPERVISORS:
        failure = re.search(r"^fatal: \[%s\]: FAILED! => (.*)$" % hypervisor, site, re.M)
        assert failure and "ipv4 raw" in failure.group(1) and "undone" in failure.group(1), site
    assert (work / "after").read_text() == (work / "before").read_text()
