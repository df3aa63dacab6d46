# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""100 consecutive re-applies of a changing state while a probe connects without pause.

The applies go through the module's backend (chains.converge) with the tools run in the server
namespace: one ansible-playbook per apply would spend the test's time in Ansible, not the kernel.
Every state allows TCP 8080 and rejects TCP 8081; what changes between applies is everything
else: the policy chain's name (so the jump moves to a new chain and the old one is deleted), its
filler rules, a helper chain, and the jump's position among a foreign rule.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Optional, Sequence, Tuple

import pytest

from ansible_collections.netpol.fleet.plugins.module_utils.iptables.chains import converge
from ansible_collections.netpol.fleet.plugins.module_utils.engine.hoststate import Chain, Jump, Table

pytestmark = pytest.mark.integration

SERVER = """
import select, socket
listeners = []
for port in (8080, 8081):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(512); listeners.append(s)
print("ready", flush=True)
while True:
    for s in select.select(listeners, [], [])[0]:
        s.accept()[0].close()
"""

PROBE = """
import json, os, socket, sys
server, stop = sys.argv[1], sys.argv[2]
counts = {"allowed_ok": 0, "allowed_bad": 0, "denied_ok": 0, "denied_bad": 0}
def attempt(port):
    with socket.create_connection((server, port), timeout=5):
        return True
first = True
while not os.path.exists(stop):
    try:
        attempt(8080); counts["allowed_ok"] += 1
    except OSError:
        counts["allowed_bad"] += 1
    try:
        attempt(8081); counts["denied_bad"] += 1
    except ConnectionRefusedError:
        counts["denied_ok"] += 1
    except OSError:
        counts["denied_ok"] += 1  # not accepted is what matters; REJECT normally refuses
    if first:
        print("probing", flush=True); first = False
print(json.dumps(counts), flush=True)
"""


class NetnsRunner:
    """Just enough of AnsibleModule for the backend: run_command inside a namespace."""

    def __init__(self, ns: str):
        self.ns = ns

    def run_command(self, args: Sequence[str], data: Optional[str] = None, **kwargs) -> Tuple[int, str, str]:
        argv = ["ip", "netns", "exec", self.ns] + list(args)
        done = subprocess.run(argv, input=data, capture_output=True, text=True, check=False)
        return done.returncode, done.stdout, done.stderr


def state(i: int) -> Table:
    policy = "NETPOL-IN-%s" % "AB"[i % 2]
    helper = Chain("NETPOL-H%d" % (i % 3), tuple("-s 10.77.%d.0/24 -j RETURN" % k for k in range(i % 4)))
    filler = tuple("-p udp -m udp --dport %d -j RETURN" % (9000 + (i * 7 + k) % 50) for k in range(i % 7))
    rules = (
        ("-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN", "-j %s" % helper.name)
        + filler
        + ("-p tcp -m tcp --dport 8080 -j RETURN", "-p tcp -m tcp --dport 8000:8099 -j REJECT --reject-with tcp-reset")
    )
    return Table("ipv4", "filter", (Chain(policy, rules), helper), (Jump("INPUT", policy, position=1 + i % 2),))


@pytest.fixture
def pair():
    """Two namespaces on a veth: client npnpa-*, server npnpb-* (10.231.0.1 -> 10.231.0.2)."""
    tag = uuid.uuid4().hex[:6]
    client, server = "npnpa-" + tag, "npnpb-" + tag
    try:
        for command in (
            "ip netns add %s" % client,
            "ip netns add %s" % server,
            "ip link add npna%s netns %s type veth peer name npnb%s netns %s" % (tag, client, tag, server),
            "ip -n %s addr add 10.231.0.1/24 dev npna%s" % (client, tag),
            "ip -n %s addr add 10.231.0.2/24 dev npnb%s" % (server, tag),
            "ip -n %s link set npna%s up" % (client, tag),
            "ip -n %s link set npnb%s up" % (server, tag),
            # A foreign rule our jump has to find its position around.
            "ip netns exec %s iptables -A INPUT -p icmp -j ACCEPT" % server,
        ):
            subprocess.run(command.split(), check=True)
        yield client, server
    finally:
        for ns in (client, server):
            subprocess.run(["ip", "netns", "delete", ns], check=False)


def test_100_reapplies_never_refuse_an_allowed_or_accept_a_denied_connection(pair, tmp_path):
    client, server = pair
    listener = subprocess.Popen(
        ["ip", "netns", "exec", server, sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True
    )
    stop = Path(tmp_path) / "stop"
    runner = NetnsRunner(server)
    try:
        assert listener.stdout.readline().strip() == "ready"
        converge(runner, [state(0)], "NETPOL-")
        probe = subprocess.Popen(
            ["ip", "netns", "exec", client, sys.executable, "-c", PROBE, "10.231.0.2", str(stop)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert probe.stdout.readline().strip() == "probing"
        outcomes = [converge(runner, [state(i)], "NETPOL-")[0] for i in range(1, 101)]
        stop.touch()
        counts = json.loads(probe.stdout.readline())
        probe.wait()
    finally:
        stop.touch()
        listener.kill()
        listener.wait()
    assert all(o.plan.changed for o in outcomes)  # every apply really rewrote something
    assert counts["allowed_bad"] == 0 and counts["denied_bad"] == 0, counts
    assert counts["allowed_ok"] > 0 and counts["denied_ok"] > 0, counts
    saved = runner.run_command(["iptables-save", "-t", "filter"])[1]
    assert "-A INPUT -j NETPOL-IN-A\n-A INPUT -p icmp -j ACCEPT\n" in saved  # state(100): first
