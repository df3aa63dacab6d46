# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""netpol_probe without traffic: verdicts from socket outcomes, order and keys of results, errors.
Real probes run in tests/integration/test_verify.py."""

from __future__ import annotations

import errno
import socket
from typing import Any, Dict

import pytest
from module_runner import run_main

from ansible_collections.netpol.fleet.plugins.modules import netpol_probe


def run(monkeypatch, **args) -> Dict[str, Any]:
    return run_main(netpol_probe.main, monkeypatch, dict(args, _ansible_check_mode=True))


OUTCOMES = {
    8001: (True, "connected"),
    8002: socket.timeout(),
    8003: ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
    8004: OSError(errno.EHOSTUNREACH, "no route"),
}


def fake_check(target, timeout):
    outcome = OUTCOMES[target["port"]]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def test_results_follow_the_targets_with_their_keys_and_a_verdict_each(monkeypatch):
    monkeypatch.setattr(netpol_probe, "probe_tcp", fake_check)
    monkeypatch.setattr(netpol_probe, "probe_udp", fake_check)
    targets = [{"address": "10.0.0.%d/24" % (port - 8000), "port": port, "protocol": "udp" if port % 2 else "TCP",
                "src": "a"} for port in sorted(OUTCOMES)]
    result = run(monkeypatch, targets=targets, workers=2)
    assert [(r["address"], r["protocol"], r["src"], r["reachable"], r["detail"]) for r in result["results"]] == [
        ("10.0.0.1", "udp", "a", True, "connected"),
        ("10.0.0.2", "tcp", "a", False, "timeout"),
        ("10.0.0.3", "udp", "a", False, "refused"),
        ("10.0.0.4", "tcp", "a", False, "host unreachable"),
    ]
    assert (result["changed"], result["reached"], result["blocked"]) == (False, 1, 3)
    assert "unreachable" not in result  # Ansible would read it as a lost host


@pytest.mark.parametrize("targets, message", [
    ([{"address": "10.0.0.1", "port": 1, "protocol": "sctp"}], "only tcp and udp"),
    ([{"address": "nowhere", "port": 1}], "bad target"),
    ([{"address": "10.0.0.1"}], "needs address and port"),
])
def test_bad_targets_fail_before_any_probe(monkeypatch, targets, message):
    monkeypatch.setattr(netpol_probe, "probe", lambda target, timeout: pytest.fail("probed"))
    result = run(monkeypatch, targets=targets)
    assert result["failed"] and message in result["msg"]


def test_a_timeout_must_be_positive(monkeypatch):
    assert run(monkeypatch, targets=[], timeout=0)["failed"]


def test_no_targets_no_results(monkeypatch):
    assert run(monkeypatch, targets=[])["results"] == []


class SynLostOnce:
    """A socket whose first connect times out (a SYN lost under load) and whose next one succeeds."""

    attempts = 0

    def __init__(self, *args):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def settimeout(self, timeout):
        assert 0 < timeout <= 1.0

    def connect(self, address):
        type(self).attempts += 1
        if type(self).attempts == 1:
            raise socket.timeout()


def test_one_lost_syn_is_sent_again_within_the_timeout(monkeypatch):
    monkeypatch.setattr(netpol_probe.socket, "socket", SynLostOnce)
    target = {"address": "10.0.0.1", "family": 4, "port": 80, "protocol": "tcp"}
    assert netpol_probe.probe_tcp(target, 1.0) == (True, "connected")
    assert SynLostOnce.attempts == 2
