#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: netpol_probe
short_description: Probe TCP and UDP reachability from the host, concurrently
description:
  - Probes every target from the host the task runs on, many at once, each bounded by O(timeout).
  - TCP is reachable when a connection is established; a second SYN goes out halfway through the
    timeout, so one lost SYN does not count as blocked. UDP is reachable when a datagram comes back
    unchanged (the echo of M(netpol.fleet.netpol_listen)); it is sent up to three times within the
    timeout, so one lost datagram does not count as blocked.
  - A failed probe says why in RV(results[].detail). V(timeout) is what a DROP looks like;
    V(refused) is a REJECT with a TCP reset or port-unreachable, or simply no listener;
    V(host unreachable) or V(prohibited) a REJECT with an ICMP host or admin-prohibited error;
    V(denied by the local firewall) a UDP probe dropped in this host's own OUTPUT chain.
  - The detail is best effort. Kernels rate-limit ICMP errors (C(net.ipv6.icmp.ratelimit)), so
    under many concurrent probes a REJECT can read V(timeout). RV(results[].reachable) is exact.
  - Read-only; runs in check mode too.
version_added: 0.1.0
author:
  - netpol.fleet contributors (@netpol-fleet)
options:
  targets:
    description:
      - What to probe. Each item needs C(address) (IPv4 or IPv6, a C(/prefix) is ignored) and
        C(port); C(protocol) is C(tcp) (default) or C(udp), in any case.
      - Any other keys (such as C(src) and C(dst) of a flow record) are returned unchanged in RV(results).
    type: list
    elements: dict
    required: true
  timeout:
    description: Seconds each probe may take.
    type: float
    default: 1.0
  workers:
    description: How many probes run at the same time.
    type: int
    default: 64
attributes:
  check_mode:
    support: full
    description: Probing changes nothing, so it runs in check mode as well.
  diff_mode:
    support: none
    description: Probing changes nothing, so there is no diff.
seealso:
  - module: netpol.fleet.netpol_listen
"""

EXAMPLES = r"""
- name: Probe the database from here
  netpol.fleet.netpol_probe:
    targets:
      - {address: 10.0.0.5, port: 5432}
      - {address: "fd00::5", port: 5432}
      - {address: 10.0.0.5, port: 53, protocol: udp}
    timeout: 0.5
  register: probe

- name: Fail if the database is unreachable
  ansible.builtin.assert:
    that: probe.results | rejectattr('reachable') | list | length == 0
"""

RETURN = r"""
results:
  description: One entry per target, in the order of O(targets), with the target's own keys.
  returned: always
  type: list
  elements: dict
  contains:
    address:
      description: The address probed, without prefix.
      type: str
      sample: 10.0.0.5
    family:
      description: 4 or 6.
      type: int
      sample: 4
    protocol:
      description: tcp or udp.
      type: str
      sample: tcp
    port:
      description: The port probed.
      type: int
      sample: 5432
    reachable:
      description: Whether the connection succeeded (TCP) or the echo came back (UDP).
      type: bool
      sample: true
    detail:
      description: C(connected), C(echoed), or why the probe failed (C(timeout), C(refused), ...).
      type: str
      sample: timeout
reached:
  description: How many targets were reachable.
  returned: always
  type: int
  sample: 12
blocked:
  description: How many targets were not.
  returned: always
  type: int
  sample: 1
"""

import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Tuple

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.netpol.fleet.plugins.module_utils.verify.flows import Flow, failure_detail, parse_target

TCP_TRIES = 2
UDP_TRIES = 3

Verdict = Tuple[bool, str]


def endpoint(target: Flow, kind: int) -> Tuple[int, tuple]:
    """Socket family and address (with an IPv6 scope resolved) of a target."""
    family = socket.AF_INET6 if target["family"] == 6 else socket.AF_INET
    info = socket.getaddrinfo(target["address"], target["port"], family, kind, 0, socket.AI_NUMERICHOST)
    return family, info[0][4]


def probe_tcp(target: Flow, timeout: float) -> Verdict:
    """Connect, with a fresh SYN halfway: the kernel's own retransmit comes only after 1 s,
    and one SYN lost under load (a full accept queue) must not read as blocked."""
    family, address = endpoint(target, socket.SOCK_STREAM)
    deadline = time.monotonic() + timeout
    for attempt in range(TCP_TRIES, 0, -1):
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(max(0.001, (deadline - time.monotonic()) / attempt))
            try:
                sock.connect(address)
                return True, "connected"
            except socket.timeout:
                continue
    return False, "timeout"


def probe_udp(target: Flow, timeout: float) -> Verdict:
    """Send a random token and wait for its echo; a connected socket also hears ICMP errors."""
    family, address = endpoint(target, socket.SOCK_DGRAM)
    token = os.urandom(16)
    deadline = time.monotonic() + timeout
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        for attempt in range(UDP_TRIES, 0, -1):
            sock.send(token)
            sock.settimeout(max(0.001, (deadline - time.monotonic()) / attempt))
            try:
                while sock.recv(64) != token:
                    pass  # a late echo of an earlier try carries the same token; anything else is noise
                return True, "echoed"
            except socket.timeout:
                continue
    return False, "timeout"


def probe(target: Flow, timeout: float) -> Flow:
    check = probe_tcp if target["protocol"] == "tcp" else probe_udp
    try:
        reachable, detail = check(target, timeout)
    except socket.timeout:
        reachable, detail = False, "timeout"
    except OSError as error:
        reachable, detail = False, failure_detail(error.errno)
    return dict(target, reachable=reachable, detail=detail)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            targets=dict(type="list", elements="dict", required=True),
            timeout=dict(type="float", default=1.0),
            workers=dict(type="int", default=64),
        ),
        supports_check_mode=True,
    )
    timeout, workers = module.params["timeout"], module.params["workers"]
    if timeout <= 0 or workers < 1:
        module.fail_json(msg="netpol_probe: timeout must be positive and workers at least 1")
    try:
        targets = [parse_target(target) for target in module.params["targets"]]
    except (KeyError, TypeError, ValueError) as error:
        module.fail_json(msg="netpol_probe: bad target: %s" % error)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(targets)))) as pool:
        results = list(pool.map(lambda target: probe(target, timeout), targets))
    reached = sum(result["reachable"] for result in results)
    # Not "reachable"/"unreachable": Ansible reads a top-level "unreachable" as a lost host.
    module.exit_json(changed=False, results=results, reached=reached, blocked=len(results) - reached)


if __name__ == "__main__":
    main()
