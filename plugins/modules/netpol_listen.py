#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: netpol_listen
short_description: Run a throw-away TCP/UDP listener for reachability probes
description:
  - Starts (O(state=present)) one small background process on the host that listens on every given
    port on all IPv4 and IPv6 addresses. TCP connections are accepted and closed at once; each UDP
    datagram is echoed back to its sender from the address it was sent to.
  - The process detaches from the task, so the task returns while it keeps listening. Its pid and
    ports are kept in a small state file; O(state=absent) stops it and removes the file.
  - The process ends by itself after O(lifetime) seconds, so a listener outlives an interrupted play
    only briefly. Still, always stop it in an C(always:) section.
  - SCTP ports are not served (they are listed in RV(unsupported)), as SCTP sockets are missing on many kernels.
  - A port another process already listens on is reported in RV(busy) and left to that process;
    probes of it measure whatever answers there.
  - Used by the C(netpol.fleet.verify) role together with M(netpol.fleet.netpol_probe).
version_added: 0.1.0
author:
  - netpol.fleet contributors (@netpol-fleet)
options:
  state:
    description:
      - V(present) makes sure a listener runs on exactly O(ports) (restarting it when they differ);
        V(absent) stops it. Both are idempotent.
    type: str
    choices: [present, absent]
    default: present
  ports:
    description:
      - Ports to listen on, in the C(netpol_ports) inventory format. Extra keys such as C(name) are ignored.
      - Required when O(state=present).
    type: list
    elements: dict
    suboptions:
      port:
        description: Port number, 1-65535.
        type: int
        required: true
      protocol:
        description: Transport protocol (case does not matter).
        type: str
        default: TCP
        choices: [TCP, UDP, SCTP, tcp, udp, sctp]
      name:
        description: The port's name; ignored.
        type: str
  state_file:
    description:
      - Where the listener's pid and ports are kept.
      - The default is one file per network namespace (named after the namespace's inode) in
        C(/run), or the temporary directory when C(/run) is not writable, so network-namespace
        hosts that share one filesystem do not collide.
    type: path
  lifetime:
    description: Seconds after which the listener stops by itself.
    type: int
    default: 900
attributes:
  check_mode:
    support: full
    description: Reports whether a listener would be started or stopped, without doing it.
  diff_mode:
    support: none
    description: Nothing to show as a diff; the result lists what changed.
notes:
  - Ports below 1024 need root (or CAP_NET_BIND_SERVICE).
seealso:
  - module: netpol.fleet.netpol_probe
"""

EXAMPLES = r"""
- name: Listen on the declared ports
  netpol.fleet.netpol_listen:
    ports:
      - {name: http, port: 8080, protocol: TCP}
      - {name: dns, port: 5353, protocol: UDP}

- name: Stop the listener
  netpol.fleet.netpol_listen:
    state: absent
"""

RETURN = r"""
pid:
  description: Pid of the listener process (0 when none runs).
  returned: always
  type: int
  sample: 4242
state_file:
  description: Path of the state file.
  returned: always
  type: str
  sample: /run/netpol-listen-4026531840.json
listening:
  description: The C({protocol, port}) pairs the listener serves.
  returned: always
  type: list
  elements: dict
  sample: [{protocol: tcp, port: 8080}, {protocol: udp, port: 5353}]
busy:
  description: Ports, per family, another process already held (the listener does not serve them there).
  returned: always
  type: list
  elements: dict
  sample: [{protocol: tcp, port: 22, family: 4}]
started:
  description:
    - Whether this call started a new listener process (V(false) when the one running already served the ports).
    - A role that starts and later stops its own listener in one run can report neither as a change
      (the host ends as it began) and still report stopping one an earlier run left behind.
  returned: always
  type: bool
  sample: true
unsupported:
  description: Ports that are not served because their protocol cannot be probed (SCTP).
  returned: always
  type: list
  elements: dict
  sample: [{protocol: sctp, port: 3868}]
"""

import errno
import json
import os
import selectors
import signal
import socket
import struct
import tempfile
import time
from typing import Dict, List, Optional, Tuple

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.netpol.fleet.plugins.module_utils.verify.flows import PortKey, port_key, probed_ports

# Linux values; Python's socket module lacks IP_PKTINFO before 3.12.
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
ANCILLARY_SPACE = socket.CMSG_SPACE(20)  # room for in_pktinfo and in6_pktinfo
STOP_WAIT = 5.0

Bound = Tuple[List[socket.socket], List[Dict[str, object]]]


def default_state_file() -> str:
    """One state file per network namespace: namespace hosts of a lab share one filesystem."""
    netns = os.stat("/proc/self/ns/net").st_ino
    directory = "/run" if os.access("/run", os.W_OK) else tempfile.gettempdir()
    return os.path.join(directory, "netpol-listen-%d.json" % netns)


def start_time(pid: int) -> Optional[str]:
    """The kernel's start time of a process: a pid plus this names one process, even after pid reuse."""
    try:
        with open("/proc/%d/stat" % pid) as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # A zombie has ended; some container inits are slow to reap them.
    return None if fields[0] in ("Z", "X") else fields[19]


def read_state(path: str) -> Optional[dict]:
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def is_running(state: Optional[dict]) -> bool:
    try:
        return start_time(int(state["pid"])) == state["start_time"]
    except (KeyError, TypeError, ValueError):  # no state file, or one we did not write
        return False


def open_socket(family: int, protocol: str, port: int) -> socket.socket:
    """A socket bound to every address of one family; IPv6 sockets stay IPv6-only so IPv4 binds too."""
    sock = socket.socket(family, socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
        if protocol == "tcp":
            sock.listen(128)
        elif family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        return sock
    except OSError:
        sock.close()
        raise


def bind_all(ports: List[PortKey]) -> Bound:
    """Bind before detaching, so failures reach the task and the listener is ready when it returns."""
    sockets, busy = [], []
    for protocol, port in ports:
        for family, version in ((socket.AF_INET, 4), (socket.AF_INET6, 6)):
            try:
                sockets.append(open_socket(family, protocol, port))
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    busy.append({"protocol": protocol, "port": port, "family": version})
                elif error.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):  # no IPv6 on this host
                    for sock in sockets:
                        sock.close()
                    raise
    return sockets, busy


def echo(sock: socket.socket) -> None:
    """Send a datagram back from the very address it reached, so the sender's connected socket takes it."""
    data, ancillary, _flags, sender = sock.recvmsg(2048, ANCILLARY_SPACE)
    reply = []
    for level, kind, info in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
            _ifindex, _local, destination = struct.unpack("=I4s4s", info[:12])
            reply = [(level, IP_PKTINFO, struct.pack("=I4s4s", 0, destination, bytes(4)))]
        elif level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO:
            reply = [(level, IPV6_PKTINFO, info[:20])]
    sock.sendmsg([data], reply, 0, sender)


def answer(sock: socket.socket) -> None:
    try:
        if sock.type == socket.SOCK_STREAM:
            sock.accept()[0].close()
        else:
            echo(sock)
    except OSError:
        pass  # a peer that vanished or a reply the kernel refused must not end the listener


def serve(sockets: List[socket.socket], lifetime: int) -> None:
    deadline = time.monotonic() + lifetime
    with selectors.DefaultSelector() as selector:
        for sock in sockets:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            for key, _events in selector.select(timeout=max(0.0, deadline - time.monotonic())):
                answer(key.fileobj)


def detach(keep: List[int]) -> None:
    """Leave the task's session and pipes: Ansible waits for its stdout to close before it returns."""
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    for fd in [int(name) for name in os.listdir("/proc/self/fd")]:
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def daemonize(sockets: List[socket.socket], lifetime: int) -> int:
    """Double fork: the listener is re-parented to init and never a zombie of the task. Returns its pid."""
    reader, writer = os.pipe()
    child = os.fork()
    if child:
        os.close(writer)
        os.waitpid(child, 0)
        with os.fdopen(reader) as pipe:
            return int(pipe.read())
    os.close(reader)
    os.setsid()
    grandchild = os.fork()
    if grandchild:
        os.write(writer, str(grandchild).encode())
        os._exit(0)  # skip the module's exit handlers, which belong to the task
    os.close(writer)
    try:
        detach([sock.fileno() for sock in sockets])
        serve(sockets, lifetime)
    finally:
        os._exit(0)


def gone(state: dict, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while is_running(state):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def stop(state: Optional[dict]) -> bool:
    """Stop the listener of a state file, politely first; True when one was running."""
    if not is_running(state):
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(int(state["pid"]), sig)
        except ProcessLookupError:
            return True
        if gone(state, STOP_WAIT):
            return True
    raise OSError("listener %s does not stop" % state["pid"])


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def as_dicts(ports: List[PortKey]) -> List[Dict[str, object]]:
    return [{"protocol": protocol, "port": port} for protocol, port in ports]


def ensure_present(module: AnsibleModule, path: str, state: Optional[dict], result: dict) -> dict:
    requested = sorted({port_key(port) for port in module.params["ports"] or []})
    wanted = probed_ports(module.params["ports"])
    result.update(listening=as_dicts(wanted), unsupported=as_dicts([key for key in requested if key not in wanted]))
    if not wanted:  # nothing to serve (no ports, or SCTP only): no process at all
        return ensure_absent(module, path, state, result)
    if is_running(state) and [tuple(port) for port in state["ports"]] == wanted:
        return dict(result, pid=int(state["pid"]), busy=state.get("busy", []))
    if module.check_mode:
        return dict(result, changed=True)
    stop(state)
    sockets, busy = bind_all(wanted)
    pid = daemonize(sockets, module.params["lifetime"])
    for sock in sockets:
        sock.close()
    record = {"pid": pid, "start_time": start_time(pid), "ports": wanted, "busy": busy}
    with open(path, "w") as handle:
        json.dump(record, handle)
    return dict(result, changed=True, started=True, pid=pid, busy=busy)


def ensure_absent(module: AnsibleModule, path: str, state: Optional[dict], result: dict) -> dict:
    running = is_running(state)
    if not module.check_mode:
        stop(state)
        remove(path)
    return dict(result, changed=running)


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type="str", choices=["present", "absent"], default="present"),
            ports=dict(type="list", elements="dict", options=dict(
                port=dict(type="int", required=True),
                protocol=dict(type="str", default="TCP", choices=["TCP", "UDP", "SCTP", "tcp", "udp", "sctp"]),
                name=dict(type="str"),
            )),
            state_file=dict(type="path"),
            lifetime=dict(type="int", default=900),
        ),
        required_if=[("state", "present", ["ports"])],
        supports_check_mode=True,
    )
    path = module.params["state_file"] or default_state_file()
    result = dict(changed=False, started=False, pid=0, state_file=path, listening=[], busy=[], unsupported=[])
    state = read_state(path)
    try:
        if module.params["state"] == "present":
            result = ensure_present(module, path, state, result)
        else:
            result = ensure_absent(module, path, state, result)
    except (OSError, ValueError) as error:
        module.fail_json(msg="netpol_listen: %s" % error, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
