# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Harvester-like lab with 8021q uplinks, enforced by the playbooks in a user-mode-linux guest
(uml.py) booted on Debian's own linux.uml, whose kernel has no conntrack zones: the bridge
dataplane cannot be applied there, and the run must say so and leave each hypervisor exactly as it
was (its transaction undone on a real kernel's refusal, not a shim's).

The lab is test_uml_8021q_harvester.py's (where the same lab is enforced on the UML kernel that has
conntrack zones): inventories/harvester with each hypervisor's two uplinks replaced by one tagged
trunk (`trunk.10` and `trunk.20`, 8021q devices, are the ports of the bridges vlan10 and vlan20).
The guest kernel refuses `CT --zone` (CONFIG_NF_CONNTRACK_ZONES is not set), which the product puts in
raw PREROUTING for every managed bridge (docs/bridge.md "Conntrack zones per L2 domain"). The
hypervisors have foreign rules in filter, nat and raw (both families), a bridge CNI's ebtables
rules and a foreign set: all byte-identical after the failed run, as are the bridge flags and net.bridge sysctls.
"""

from __future__ import annotations

import re

import pytest

from conftest import REPO
from test_enforce_e2e import FAST
from test_uml_8021q_harvester import TRUNK_LAB
from uml import DEBIAN_KERNEL, Guest

pytestmark = pytest.mark.integration

HYPERVISORS = ("hvl-hv1", "hvl-hv2")

SCRIPT = TRUNK_LAB + r"""
state hvl-hv1 hvl-hv2 > /run/work/before  # snippets.sh, sourced by TRUNK_LAB
ip netns add zones; ip netns exec zones iptables -t raw -A PREROUTING -j CT --zone 5 2>&1 | sed 's/^/ZONE /'
ansible-playbook -i inventories/harvester playbooks/site.yml %(fast)s > /run/work/site.out 2>&1
echo "site rc $?"
state hvl-hv1 hvl-hv2 > /run/work/after
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
        for vlan in ("10", "20"):
            ports = re.search(r"^PORTS %s vlan%s (.*)$" % (hypervisor, vlan), output, re.M).group(1).split()
            assert [p for p in ports if not p.startswith("vm-")] == ["trunk.%s" % vlan], output


def test_without_conntrack_zones_the_run_fails_naming_the_raw_table_and_leaves_the_hypervisors_as_they_were(enforced):
    work, output = enforced
    assert "ZONE iptables: Operation not supported." in output  # what the kernel says to CT --zone
    site = (work / "site.out").read_text()
    assert re.search(r"^site rc [1-9]", output, re.M), site
    for hypervisor in HYPERVISORS:
        failure = re.search(r"^fatal: \[%s\]: FAILED! => (.*)$" % hypervisor, site, re.M)
        assert failure and "ipv4 raw" in failure.group(1) and "undone" in failure.group(1), site
    assert (work / "after").read_text() == (work / "before").read_text()
