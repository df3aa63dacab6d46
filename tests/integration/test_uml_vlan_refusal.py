# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A VLAN-aware bridge on a real kernel that builds one (a user-mode-linux guest, uml.py): the
netpol_bridge query reports the VLANs of every port of the bridge, and the enforce run refuses a VM
whose port is a trunk, naming host, VM, field and what the port carries, before any host changes
(the access port beside it is accepted: test_uml_vlan_aware.py enforces that layout).

The hypervisor namespace g-hv has brv (vlan_filtering 1) with p1, an access port of VLAN 10 (a VM
namespace behind it), p2, a trunk port (VLANs 10 and 20 tagged), and an uplink trunk; its
netpol_workloads put vm1 on p1 and vm2 on p2. The playbooks run inside the guest, from this checkout.
"""

from __future__ import annotations

import json

import pytest

from conftest import REPO, write_lab_inventory
from test_enforce_e2e import FAST, NAMESPACES, policy
from uml import Guest

pytestmark = pytest.mark.integration

PREFIX = "g-"
VMS = [{"name": "vm1", "namespace": "alpha", "labels": {"app": "web"}, "addresses": ["10.10.0.1", "fd10::1"],
        "interface": "p1", "mac": "52:54:00:10:00:01"},
       {"name": "vm2", "namespace": "alpha", "labels": {"app": "api"}, "addresses": ["10.10.0.2", "fd10::2"],
        "interface": "p2", "mac": "52:54:00:10:00:02"}]

SCRIPT = r"""
R=%(repo)s
export PATH=$R/.venv/bin:$PATH ANSIBLE_CONFIG=$R/ansible.cfg ANSIBLE_COLLECTIONS_PATH=$R/collection ANSIBLE_NOCOLOR=1
HV=g-hv
ip netns add $HV; ip netns add g-vm1; ip -n $HV link set lo up
ip -n $HV link add brv type bridge vlan_filtering 1
ip -n $HV link add p1 type veth peer name eth0 netns g-vm1
ip -n $HV link add p2 type veth peer name p2peer
ip -n $HV link add uplink type veth peer name uplinkpeer
for port in p1 p2 uplink; do ip -n $HV link set $port master brv up; bridge -n $HV vlan del dev $port vid 1; done
bridge -n $HV vlan add dev p1 vid 10 pvid untagged
bridge -n $HV vlan add dev p2 vid 10; bridge -n $HV vlan add dev p2 vid 20
bridge -n $HV vlan add dev uplink vid 10; bridge -n $HV vlan add dev uplink vid 20
ip -n $HV link set brv up
state() { for tool in iptables-save ip6tables-save ebtables-save "ipset save"; do ip netns exec $HV $tool | grep -v '^#'; done
          ip netns exec $HV sh -c 'grep -H . /sys/class/net/brv/bridge/nf_call_ip*tables /proc/sys/net/bridge/*'; }
state > /run/work/before
cd $R
ansible-playbook -i /run/work/inv/hosts.yml playbooks/site.yml -e @/run/work/vars.json %(fast)s > /run/work/site.out 2>&1
echo "site rc $?"
state > /run/work/after
ansible $HV -i /run/work/inv/hosts.yml -m netpol.fleet.netpol_bridge -a "state=query ports=p1,p2" \
    --tree /run/work/tree > /run/work/query.out 2>&1
echo "query rc $?"
"""


@pytest.fixture(scope="module")
def refused(tmp_path_factory):
    work = tmp_path_factory.mktemp("uml-refusal")
    guest = Guest.boot_or_skip(work)
    hv = {"netpol_addresses": ["10.10.0.101/24"], "netpol_workloads": VMS}
    write_lab_inventory(work / "inv", PREFIX, {"hv": hv}, {"netpol_namespaces": NAMESPACES})
    (work / "vars.json").write_text(json.dumps({"netpol_policies": [
        policy("alpha", "deny-all", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})]}))
    result = guest.run(SCRIPT % {"repo": REPO, "fast": " ".join(FAST)}, timeout=600)
    assert result.rc == 0, result.output
    return work, result.output


def test_the_query_reports_each_vm_ports_vlans(refused):
    work, output = refused
    assert "query rc 0" in output, (work / "query.out").read_text()
    query = json.loads((work / "tree" / (PREFIX + "hv")).read_text())
    assert query["vlan_aware"] == ["brv"] and query["ports"] == {"p1": "brv", "p2": "brv"}
    assert query["vlans"] == {"p1": {"bridge": "brv", "pvid": 10, "untagged": [10], "tagged": []},
                              "p2": {"bridge": "brv", "pvid": None, "untagged": [], "tagged": [10, 20]},
                              "uplink": {"bridge": "brv", "pvid": None, "untagged": [], "tagged": [10, 20]}}


def test_enforcing_refuses_a_trunk_vm_port_naming_host_vm_field_and_vlans_and_changes_nothing(refused):
    work, output = refused
    site = (work / "site.out").read_text()
    assert "site rc 2" in output and "no host was changed" in site, site
    assert "netpol_workloads[0]" not in site, site  # vm1's access port is not refused
    trunk = ("inventory host g-hv: netpol_workloads[1].interface: port p2 of VM alpha/vm2 on the VLAN-aware bridge brv "
             "(vlan_filtering 1) carries PVID none, tagged 10, 20: a VM port there must be an access port (exactly one "
             "VLAN, its PVID, egress untagged); a VM choosing its VLANs by tagging is not supported")
    assert trunk in site, site
    assert (work / "after").read_text() == (work / "before").read_text()
