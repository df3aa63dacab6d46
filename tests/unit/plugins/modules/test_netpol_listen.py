# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""netpol_listen decisions: start, keep, stop, and check mode, without opening sockets.
Real listeners (fork, bind, echo) are exercised in tests/integration/test_verify.py."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Dict

import pytest
from module_runner import run_main

from ansible_collections.netpol.fleet.plugins.modules import netpol_listen

PORTS = [{"name": "http", "port": 8080}, {"name": "dns", "port": 53, "protocol": "UDP"},
         {"name": "diameter", "port": 3868, "protocol": "SCTP"}]
SERVED = [["tcp", 8080], ["udp", 53]]


def run(monkeypatch, check: bool = False, **args) -> Dict[str, Any]:
    return run_main(netpol_listen.main, monkeypatch, dict(args, _ansible_check_mode=check))


@pytest.fixture
def no_processes(monkeypatch):
    """Starting or stopping a real process here would be a bug in the test."""
    def forbidden(*args):
        raise AssertionError("unexpected process change %r" % (args,))

    monkeypatch.setattr(netpol_listen, "daemonize", forbidden)
    monkeypatch.setattr(netpol_listen, "bind_all", forbidden)
    monkeypatch.setattr(netpol_listen.os, "kill", forbidden)


def state_of_this_process(ports=None) -> dict:
    """A state file naming a live process: this test's own."""
    return {"pid": os.getpid(), "start_time": netpol_listen.start_time(os.getpid()), "ports": ports or SERVED,
            "busy": []}


def test_check_mode_reports_a_start_without_starting(monkeypatch, tmp_path: Path, no_processes):
    result = run(monkeypatch, check=True, ports=PORTS, state_file=str(tmp_path / "state.json"))
    assert (result["changed"], result["pid"]) == (True, 0)
    assert result["listening"] == [{"protocol": "tcp", "port": 8080}, {"protocol": "udp", "port": 53}]
    assert result["unsupported"] == [{"protocol": "sctp", "port": 3868}]
    assert not (tmp_path / "state.json").exists()


def test_a_running_listener_on_the_same_ports_is_kept(monkeypatch, tmp_path: Path, no_processes):
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state_of_this_process()))
    result = run(monkeypatch, ports=PORTS, state_file=str(path))
    assert (result["changed"], result["started"], result["pid"]) == (False, False, os.getpid())


def test_a_listener_on_other_ports_is_replaced(monkeypatch, tmp_path: Path):
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state_of_this_process(ports=[["tcp", 1]])))
    stopped, started = [], []
    monkeypatch.setattr(netpol_listen, "stop", stopped.append)
    monkeypatch.setattr(netpol_listen, "bind_all", lambda ports: ([], [{"protocol": "udp", "port": 53, "family": 4}]))
    monkeypatch.setattr(netpol_listen, "daemonize", lambda sockets, lifetime: started.append(lifetime) or os.getpid())
    result = run(monkeypatch, ports=PORTS, state_file=str(path), lifetime=60)
    assert (result["changed"], result["started"], result["pid"], result["busy"]) == (True, True, os.getpid(), [
        {"protocol": "udp", "port": 53, "family": 4}])
    assert [state["ports"] for state in stopped] == [[["tcp", 1]]] and started == [60]
    assert json.loads(path.read_text())["ports"] == SERVED


def test_stopping_when_nothing_runs_changes_nothing_and_drops_a_stale_file(monkeypatch, tmp_path, no_processes):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"pid": os.getpid(), "start_time": "not this one", "ports": SERVED}))
    assert run(monkeypatch, state="absent", state_file=str(path))["changed"] is False
    assert not path.exists()


def test_stopping_in_check_mode_reports_it_and_leaves_the_listener(monkeypatch, tmp_path, no_processes):
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state_of_this_process()))
    assert run(monkeypatch, check=True, state="absent", state_file=str(path))["changed"] is True
    assert path.exists()


def test_present_needs_ports(monkeypatch, tmp_path):
    result = run(monkeypatch, state_file=str(tmp_path / "state.json"))
    assert result["failed"] and "ports" in result["msg"]


@pytest.mark.parametrize("content", ["", "not json", "{}", '{"pid": "x", "start_time": "1"}', "[]"])
def test_a_damaged_state_file_means_no_listener(tmp_path: Path, content: str):
    path = tmp_path / "state.json"
    path.write_text(content)
    assert netpol_listen.is_running(netpol_listen.read_state(str(path))) is False


def test_each_network_namespace_has_its_own_state_file():
    inode = os.stat("/proc/self/ns/net").st_ino
    assert netpol_listen.default_state_file().endswith("netpol-listen-%d.json" % inode)


def test_stop_ends_a_running_process_and_counts_a_zombie_as_ended():
    child = subprocess.Popen(["sleep", "60"])
    try:
        state = {"pid": child.pid, "start_time": netpol_listen.start_time(child.pid)}
        assert netpol_listen.is_running(state)
        assert netpol_listen.stop(state) is True  # the child stays a zombie until waited for
        assert netpol_listen.is_running(state) is False
        assert netpol_listen.stop(state) is False
    finally:
        child.kill()
        child.wait()


def test_nothing_to_serve_runs_no_process_and_stops_an_old_one(monkeypatch, tmp_path: Path):
    path = tmp_path / "state.json"
    path.write_text(json.dumps(state_of_this_process()))
    stopped = []
    monkeypatch.setattr(netpol_listen, "stop", lambda state: stopped.append(state) or True)
    monkeypatch.setattr(netpol_listen, "daemonize", lambda *args: pytest.fail("started a listener"))
    result = run(monkeypatch, ports=[{"port": 3868, "protocol": "SCTP"}], state_file=str(path))
    assert (result["changed"], result["pid"], result["listening"]) == (True, 0, [])
    assert len(stopped) == 1 and not path.exists()
