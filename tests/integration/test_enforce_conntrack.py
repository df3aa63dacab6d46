# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tightening a policy cuts the established connections it now denies (netpol_conntrack_cut).

A lab of two hosts: web holds long-lived TCP connections to db's port 5432 over IPv4 and IPv6,
opened while a policy allows them. Then site.yml enforces a policy that no longer does: with
netpol_conntrack_cut=false the connections live on (replies of established connections pass
first); with true (the default) the next message on each goes unanswered, while a connection the
new policy still allows (port 6379) keeps working. --check lists the connections a run would cut
and cuts none.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Dict, Iterator

import pytest

from conftest import run_playbook, session_prefix

pytestmark = pytest.mark.integration

FAST = ("-e", "netpol_gather_facts=false", "-e", "netpol_report=false")
HOSTS = {
    "web": {"netpol_namespace": "shop", "netpol_labels": {"app": "web"},
            "netpol_addresses": ["10.79.0.1/24", "fd79::1/64"]},
    "db": {"netpol_namespace": "shop", "netpol_labels": {"app": "db"},
           "netpol_addresses": ["10.79.0.2/24", "fd79::2/64"]},
}
ENDPOINTS = {"pg4": ("10.79.0.2", 5432), "pg6": ("fd79::2", 5432), "redis4": ("10.79.0.2", 6379)}

# db: echo every line back on 5432 and 6379, both families.
SERVER = """
import socket, threading
def serve(conn):
    with conn:
        for line in conn.makefile("rb"):
            conn.sendall(line)
for port in (5432, 6379):
    s = socket.socket(socket.AF_INET6); s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("::", port)); s.listen()
    threading.Thread(target=lambda s=s: [threading.Thread(target=serve, args=(s.accept()[0],)).start()
                                         for _ in iter(int, 1)], daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

# web: open one connection per endpoint now; on each input line, send a message on every one and
# print which got their echo back (an unanswered one waits for its timeout, 3 s).
CLIENT = """
import json, socket, sys
endpoints = json.loads(sys.argv[1])
conns = {name: socket.create_connection(tuple(address)) for name, address in endpoints.items()}
print("connected", flush=True)
for _ in sys.stdin:
    answered = {}
    for name, conn in conns.items():
        conn.settimeout(3)
        try:
            conn.sendall(b"ping\\n"); answered[name] = conn.recv(16) == b"ping\\n"
        except OSError:
            answered[name] = False
    print(json.dumps(answered), flush=True)
"""


def policy(ports) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "db-from-web", "namespace": "shop"},
            "spec": {"podSelector": {"matchLabels": {"app": "db"}},
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                                  "ports": [{"port": p} for p in ports]}]}}


class Connections:
    """web's long-lived connections to db, asked in turn whether each still gets answers."""

    def __init__(self, web: str):
        self.process = subprocess.Popen(["ip", "netns", "exec", web, sys.executable, "-c", CLIENT,
                                         json.dumps(ENDPOINTS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)
        assert self.process.stdout.readline().strip() == "connected"

    def answered(self) -> Dict[str, bool]:
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def shop(make_lab) -> Iterator:
    lab = make_lab(session_prefix("npk", "ct"), HOSTS)
    web, db = (lab.prefix + name for name in ("web", "db"))
    server = subprocess.Popen(["ip", "netns", "exec", db, sys.executable, "-c", SERVER], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        yield lab, web
    finally:
        server.kill()
        server.wait()


def enforce(lab, ports, *extra: str) -> str:
    variables = json.dumps({"netpol_policies": [policy(ports)]})
    return run_playbook("playbooks/site.yml", lab.inventory, *FAST, "-e", variables, *extra).stdout


@pytest.mark.parametrize("cut", [False, True])
def test_tightening_cuts_the_connections_it_denies_only_when_asked(shop, cut):
    lab, web = shop
    enforce(lab, [5432, 6379])
    connections = Connections(web)
    try:
        assert connections.answered() == {"pg4": True, "pg6": True, "redis4": True}
        output = enforce(lab, [6379], "-e", "netpol_conntrack_cut=%s" % str(cut).lower(), "-e", "netpol_report=true")
        if cut:
            assert connections.answered() == {"pg4": False, "pg6": False, "redis4": True}
            assert "tcp 10.79.0.1:" in output and "-> 10.79.0.2:5432 zone 0" in output  # reported, by tuple
        else:
            assert connections.answered() == {"pg4": True, "pg6": True, "redis4": True}
    finally:
        connections.close()


def test_check_mode_lists_the_connections_the_run_would_cut_and_cuts_none(shop):
    lab, web = shop
    enforce(lab, [5432, 6379])
    connections = Connections(web)
    try:
        assert connections.answered() == {"pg4": True, "pg6": True, "redis4": True}
        output = enforce(lab, [6379], "--check", "-e", "netpol_report=true")
        assert "-> 10.79.0.2:5432 zone 0" in output and "-> [fd79::2]:5432 zone 0" in output  # would be cut
        assert "6379" not in output.partition("connections_cut")[2].partition("]")[0]  # allowed: not listed
        assert connections.answered() == {"pg4": True, "pg6": True, "redis4": True}  # nothing applied, none cut
    finally:
        connections.close()
