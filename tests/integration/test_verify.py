# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The verify role and its modules on real namespaces: real listeners, real probes, real iptables."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, Iterator, List

import pytest

from conftest import LAB_PLAYBOOK, Lab, ansible_env, run_adhoc, run_playbook, session_prefix

SSHD = "/usr/sbin/sshd"

pytestmark = pytest.mark.integration

PORTS = [
    {"name": "http", "port": 8080, "protocol": "TCP"},
    {"name": "dns", "port": 5353, "protocol": "UDP"},
    {"name": "diameter", "port": 3868, "protocol": "SCTP"},  # declared, never probed
]


def lab_hosts(subnet: int, count: int) -> Dict[str, dict]:
    return {
        "h%d" % i: {"netpol_addresses": ["10.%d.0.%d/24" % (subnet, i), "fd%02x::%d/64" % (subnet, i)],
                    "netpol_ports": PORTS}
        for i in range(1, count + 1)
    }


def netns_pids(namespace: str) -> List[str]:
    return subprocess.run(["ip", "netns", "pids", namespace], check=False, capture_output=True, text=True).stdout.split()


def in_netns(namespace: str, *argv: str) -> None:
    subprocess.run(["ip", "netns", "exec", namespace, *argv], check=True, capture_output=True)


@pytest.fixture
def verify_lab(make_lab) -> Iterator[Callable[[str, Dict[str, dict]], Lab]]:
    """make_lab, plus: whatever still runs in the lab's namespaces when the test ends (a listener
    of a failed test) is killed before the namespaces go, so nothing outlives the test."""
    labs: List[Lab] = []
    yield lambda prefix, hosts: labs.append(make_lab(prefix, hosts)) or labs[-1]
    for lab in labs:
        for host in lab.hosts:
            for pid in netns_pids(host):
                os.kill(int(pid), signal.SIGKILL)


def listening_sockets(namespace: str, ports: List[int]) -> str:
    query = " or ".join("sport = :%d" % port for port in ports)
    return subprocess.run(["ip", "netns", "exec", namespace, "ss", "-H", "-l", "-t", "-u", "-n", query],
                          check=True, capture_output=True, text=True).stdout


def sshd_config(directory: Path, port: int) -> Path:
    path = directory / ("sshd_config_%d" % port)
    path.write_text("\n".join([
        "ListenAddress 127.0.0.1:%d" % port,
        "HostKey %s" % (directory / "host_key"),
        "AuthorizedKeysFile %s" % (directory / "client_key.pub"),
        "PidFile none", "PermitRootLogin prohibit-password", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no", "",
    ]))
    return path


@pytest.fixture
def ssh_inventory(tmp_path: Path) -> Iterator[Callable[[Lab, Dict[str, dict]], Path]]:
    """Factory: an sshd on the loopback of each lab host, and an inventory that reaches the hosts
    over real SSH (a ProxyCommand steps into the namespace), as a real fleet would be reached."""
    if not os.path.exists(SSHD) or not shutil.which("socat"):
        pytest.skip("sshd or socat is missing: `make deps` installs openssh-server and socat")
    daemons: List[subprocess.Popen] = []

    def build(lab: Lab, host_vars: Dict[str, dict]) -> Path:
        for key in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / key)], check=True)
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
        hosts = {}
        for index, (host, variables) in enumerate(zip(lab.hosts, host_vars.values())):
            port = 2201 + index
            daemons.append(subprocess.Popen(["ip", "netns", "exec", host, SSHD, "-D", "-e", "-f",
                                             str(sshd_config(tmp_path, port))], stderr=subprocess.DEVNULL))
            while not listening_sockets(host, [port]):
                assert daemons[-1].poll() is None, "sshd in %s did not start" % host
            hosts[host] = dict(variables, ansible_connection="ssh", ansible_host="127.0.0.1", ansible_port=port,
                               ansible_user="root", ansible_ssh_private_key_file=str(tmp_path / "client_key"),
                               ansible_python_interpreter=sys.executable,
                               ansible_ssh_common_args="-o UserKnownHostsFile=/dev/null -o 'ProxyCommand="
                                                       "ip netns exec %s socat - TCP:127.0.0.1:%%p'" % host)
        path = tmp_path / "ssh-hosts.yml"
        path.write_text(json.dumps({"all": {"hosts": hosts}}))
        return path

    yield build
    for daemon in daemons:
        daemon.terminate()
        daemon.wait()


def recap_changed(stdout: str) -> Dict[str, int]:
    """host -> changed= of the PLAY RECAP."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", stdout, re.M)}


def flow_ids(flows: List[dict]) -> set:
    return {(f["src"], f["dst"], f["address"], f["family"], f["protocol"], f["port"]) for f in flows}


def test_verify_measures_every_port_and_names_the_one_blocked_flow(verify_lab, tmp_path: Path) -> None:
    lab = verify_lab(session_prefix("npv", "1"), lab_hosts(77, 3))
    a, b, c = lab.hosts
    matrix_file = tmp_path / "matrix.json"

    first = run_playbook("playbooks/verify.yml", lab.inventory, "-e", "netpol_verify_matrix_file=%s" % matrix_file)

    # a probe run is read-only: listeners started and stopped within it, nothing reported changed
    assert recap_changed(first.stdout) == {a: 0, b: 0, c: 0}
    measured = json.loads(matrix_file.read_text())
    addresses = {a: ("10.77.0.1", "fd4d::1"), b: ("10.77.0.2", "fd4d::2"), c: ("10.77.0.3", "fd4d::3")}
    assert flow_ids(measured) == {
        (src, dst, address, 6 if ":" in address else 4, protocol, port)
        for src in lab.hosts for dst in lab.hosts if src != dst
        for address in addresses[dst] for protocol, port in (("tcp", 8080), ("udp", 5353))
    }
    assert [f for f in measured if not f["reachable"]] == []

    # One hand-written rule on b drops a's IPv4 TCP to 8080; every other flow still passes.
    in_netns(b, "iptables", "-I", "INPUT", "-s", "10.77.0.1", "-p", "tcp", "--dport", "8080", "-j", "DROP")
    expected_file = tmp_path / "expected.json"
    expected = [{k: v for k, v in f.items() if k != "detail"} for f in measured]
    expected_file.write_text(json.dumps({"netpol_verify_expected": expected}))

    result = run_playbook("playbooks/verify.yml", lab.inventory, "-e", "@%s" % expected_file, check=False)

    assert result.returncode != 0
    rows = [line for line in result.stdout.splitlines() if "blocked (" in line and "differ" not in line]
    assert len(rows) == 1, result.stdout
    assert re.search(r"%s\s+%s\s+10\.77\.0\.2\s+tcp/8080\s+IPv4\s+reachable\s+blocked \(timeout\)" % (a, b), rows[0])
    assert "1 flows differ from the expected matrix" in result.stdout

    # Listeners are gone on success and on failure alike; then the lab itself goes.
    assert {host: netns_pids(host) for host in lab.hosts} == {host: [] for host in lab.hosts}
    run_playbook(LAB_PLAYBOOK, lab.inventory, "-e", "state=absent")
    assert lab.namespaces() == []


def test_listener_is_idempotent_and_probe_tells_drop_reject_and_closed_apart(verify_lab) -> None:
    hosts = lab_hosts(78, 2)
    hosts["h2"]["netpol_addresses"] += ["10.78.0.12/24", "fd4e::12/64"]  # echoes must leave from these too
    lab = verify_lab(session_prefix("npv", "2"), hosts)
    client, server = lab.hosts
    ports = json.dumps({"ports": PORTS + [{"name": "held", "port": 9000}]})
    # Another program already serves TCP 9000 on IPv4: the listener leaves it be and says so.
    holder = subprocess.Popen(["ip", "netns", "exec", server, sys.executable, "-c",
                               "import socket, sys; s = socket.create_server(('0.0.0.0', 9000)); sys.stdin.read()"],
                              stdin=subprocess.PIPE)
    while not listening_sockets(server, [9000]):
        assert holder.poll() is None

    assert run_adhoc(server, lab.inventory, "netpol.fleet.netpol_listen", ports, "--check")[server]["changed"]
    assert netns_pids(server) == [str(holder.pid)]  # check mode starts nothing
    started = run_adhoc(server, lab.inventory, "netpol.fleet.netpol_listen", ports)[server]
    again = run_adhoc(server, lab.inventory, "netpol.fleet.netpol_listen", ports)[server]
    assert (started["changed"], again["changed"], again["pid"]) == (True, False, started["pid"])
    assert started["unsupported"] == [{"protocol": "sctp", "port": 3868}]
    assert started["busy"] == [{"protocol": "tcp", "port": 9000, "family": 4}]
    assert str(started["pid"]) in netns_pids(server)

    in_netns(server, "ip6tables", "-I", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "DROP")
    in_netns(server, "iptables", "-I", "INPUT", "-p", "tcp", "--dport", "8080", "-j", "REJECT",
             "--reject-with", "icmp-host-prohibited")
    targets = [
        {"address": "fd4e::2/64", "port": 8080, "protocol": "TCP"},  # dropped
        {"address": "10.78.0.2", "port": 8080, "protocol": "tcp"},   # rejected
        {"address": "10.78.0.2", "port": 8081, "protocol": "tcp"},   # nobody listens
        {"address": "10.78.0.2", "port": 5353, "protocol": "udp", "tag": "kept"},
        {"address": "fd4e::2", "port": 5354, "protocol": "udp"},     # nobody listens
        {"address": "10.78.0.12", "port": 5353, "protocol": "udp"},  # secondary addresses
        {"address": "fd4e::12", "port": 5353, "protocol": "udp"},
        {"address": "10.78.0.2", "port": 9000},                      # served by the other program
        {"address": "fd4e::2", "port": 9000},                        # served by the listener
    ]
    probe = run_adhoc(client, lab.inventory, "netpol.fleet.netpol_probe",
                      json.dumps({"targets": targets, "timeout": 0.5}), "--check")[client]

    assert [(r["reachable"], r["detail"]) for r in probe["results"]] == [
        (False, "timeout"), (False, "host unreachable"), (False, "refused"), (True, "echoed"), (False, "refused"),
        (True, "echoed"), (True, "echoed"), (True, "connected"), (True, "connected"),
    ]
    assert probe["results"][3]["tag"] == "kept" and probe["results"][0]["address"] == "fd4e::2"
    assert (probe["reached"], probe["blocked"], probe["changed"]) == (5, 4, False)

    stopped = run_adhoc(server, lab.inventory, "netpol.fleet.netpol_listen", "state=absent")[server]
    stopped_again = run_adhoc(server, lab.inventory, "netpol.fleet.netpol_listen", "state=absent")[server]
    assert (stopped["changed"], stopped_again["changed"]) == (True, False)
    assert str(started["pid"]) not in netns_pids(server)
    holder.communicate("")  # the other program ends when its stdin closes
    assert netns_pids(server) == []


def test_verify_runs_over_ssh_and_leaves_no_listener(verify_lab, ssh_inventory, tmp_path: Path) -> None:
    hosts = lab_hosts(79, 2)
    lab = verify_lab(session_prefix("npv", "3"), hosts)
    inventory = ssh_inventory(lab, hosts)
    matrix_file = tmp_path / "matrix.json"

    run_playbook("playbooks/verify.yml", inventory, "-e", "netpol_verify_matrix_file=%s" % matrix_file,
                 env=ansible_env(ANSIBLE_SSH_ARGS="-o ControlMaster=no"))

    measured = json.loads(matrix_file.read_text())
    assert len(measured) == 2 * 2 * 2 and all(flow["reachable"] for flow in measured)
    assert {host: listening_sockets(host, [8080, 5353]) for host in lab.hosts} == {host: "" for host in lab.hosts}

    # Check mode starts nothing and judges nothing, even against an expectation that is wrong.
    expected_file = tmp_path / "expected.json"
    expected_file.write_text(json.dumps({"netpol_verify_expected": [dict(f, reachable=False) for f in measured]}))
    run_playbook("playbooks/verify.yml", inventory, "--check", "-e", "@%s" % expected_file,
                 env=ansible_env(ANSIBLE_SSH_ARGS="-o ControlMaster=no"))  # raises when the play fails
    assert {host: listening_sockets(host, [8080, 5353]) for host in lab.hosts} == {host: "" for host in lab.hosts}
