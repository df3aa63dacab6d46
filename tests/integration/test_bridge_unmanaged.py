# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""netpol_bridge_drop_unmanaged, with real traffic: a VM namespace on the managed bridge br-net that is
not in netpol_workloads, beside two managed VMs, the hypervisor (its address on br-net) and an outside
host behind the hypervisor's uplink.

Off (the default) the unmanaged VM is as if bridge mode were not there: it reaches the outside and
the hypervisor, and a managed VM whose policy admits it. On, its packets drop in FORWARD and INPUT,
whichever way; the managed VMs and the hypervisor's own traffic are unchanged.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Dict, Iterator, List

import pytest

from conftest import run_playbook
from test_bridge_e2e import inventory_hosts, vm_mac
from test_engine_kernel import SERVER, _probe_all
from test_enforce_e2e import FAST, HOSTS, NAMESPACES, changed_counts, policy, pods, session_token

pytestmark = pytest.mark.integration

UNMANAGED = ("10.77.0.50", "fd77::50")
EXT = ("10.77.0.200", "fd77::200")
HYPERVISOR = ("10.77.0.101", "fd77::101")
WEB = ("10.77.0.1", "fd77::1")
# a-web admits http from anywhere (an ipBlock peer): the unmanaged VM is judged like any outside host.
WEB_OPEN = [policy("alpha", "web-http-from-anywhere", {"podSelector": pods(app="web"), "ingress": [
    {"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}], "ports": [{"port": 80}]}]})]


def tcp80(source: str, addresses) -> List[Dict]:
    return [{"src": source, "address": a, "family": 6 if ":" in a else 4, "protocol": "tcp", "port": 80}
            for a in addresses]


@pytest.fixture
def lab(make_lab) -> Iterator[Dict[str, Any]]:
    prefix = "npb%su-" % session_token()
    two = {name: HOSTS[name] for name in ("a-web", "a-api")}
    hosts = inventory_hosts(prefix, {name: "hv1" for name in two}, two)
    hosts["hv1"]["netpol_bridge_uplinks"] = {"br-net": [prefix + "hv1"]}  # the lab's uplink is named so
    built = make_lab(prefix, hosts, {"netpol_namespaces": NAMESPACES})
    names = {"hv1": prefix + "hv1", "web": prefix + "a-web", "ext": prefix + "ext", "x": prefix + "x",
             "inventory": built.inventory}
    hv1, x = names["hv1"], names["x"]
    subprocess.run(["ip", "netns", "add", x], check=True)
    subprocess.run(["ip", "-n", x, "link", "add", "eth0", "address", vm_mac(50), "type", "veth", "peer", "name",
                    "vm-x", "netns", hv1], check=True)
    subprocess.run(["ip", "-n", hv1, "link", "set", "vm-x", "master", "br-net", "up"], check=True)
    for address, length in zip(UNMANAGED, ("24", "64")):
        subprocess.run(["ip", "-n", x, "address", "add", "%s/%s" % (address, length), "dev", "eth0"]
                       + (["nodad"] if ":" in address else []), check=True)
    for link in ("eth0", "lo"):
        subprocess.run(["ip", "-n", x, "link", "set", link, "up"], check=True)
    servers = [subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, "80/tcp"],
                                stdout=subprocess.PIPE, text=True) for ns in (names["web"], names["ext"], x, hv1)]
    try:
        assert [s.stdout.readline().strip() for s in servers] == ["ready"] * 4
        yield names
    finally:
        for server in servers:
            server.kill()
            server.wait()


def enforce(lab: Dict[str, Any], drop: bool) -> str:
    extra = json.dumps({"netpol_policies": WEB_OPEN, "netpol_bridge_drop_unmanaged": drop})
    return run_playbook("playbooks/site.yml", lab["inventory"], "-e", extra, *FAST).stdout


def reach(lab: Dict[str, Any]) -> Dict[str, List[bool]]:
    flows = {
        "unmanaged to a managed VM": tcp80(lab["x"], WEB),
        "unmanaged to the outside": tcp80(lab["x"], EXT),
        "outside to unmanaged": tcp80(lab["ext"], UNMANAGED),
        "unmanaged to the hypervisor": tcp80(lab["x"], HYPERVISOR),
        "outside to a managed VM": tcp80(lab["ext"], WEB),
        "managed VM to the outside": tcp80(lab["web"], EXT),
        "hypervisor to the outside": tcp80(lab["hv1"], EXT),
        "outside to the hypervisor": tcp80(lab["ext"], HYPERVISOR),
        "hypervisor to unmanaged": tcp80(lab["hv1"], UNMANAGED),
    }
    records = [r for name in flows for r in flows[name]]
    outcomes = iter(_probe_all(records))
    return {name: [next(outcomes) for _flow in flows[name]] for name in flows}


ALWAYS = {"outside to a managed VM": [True, True], "managed VM to the outside": [True, True],
          "hypervisor to the outside": [True, True], "outside to the hypervisor": [True, True],
          "hypervisor to unmanaged": [True, True]}


def test_an_unmanaged_port_passes_by_default_and_drops_when_asked_the_rest_unchanged(lab):
    enforce(lab, drop=False)
    assert reach(lab) == dict(ALWAYS, **{"unmanaged to a managed VM": [True, True],
                                         "unmanaged to the outside": [True, True],
                                         "outside to unmanaged": [True, True],
                                         "unmanaged to the hypervisor": [True, True]})
    enforce(lab, drop=True)
    assert reach(lab) == dict(ALWAYS, **{"unmanaged to a managed VM": [False, False],
                                         "unmanaged to the outside": [False, False],
                                         "outside to unmanaged": [False, False],
                                         "unmanaged to the hypervisor": [False, False]})
    again = enforce(lab, drop=True)
    assert set(changed_counts(again).values()) == {0}, again
    enforce(lab, drop=False)  # switched off again: the port is back as before
    assert reach(lab)["unmanaged to the outside"] == [True, True]
