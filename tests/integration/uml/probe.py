# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real TCP and UDP probes between network namespaces, for scripts run inside a UML guest.

One process does every probe of a list (starting Python per probe costs seconds in a loaded guest):
a socket belongs to the namespace it was created in, so the server's is made in the destination
namespace, the client's in the source one (setns), and both are used from here.

    python3 probe.py LABEL < lines of "PATH SOURCE_NS DESTINATION_NS tcp|udp ADDRESS"
    -> "PROBE LABEL PATH PROTOCOL got|nothing" per line (got: the server received it)
"""

import ctypes
import os
import socket
import sys

CLONE_NEWNET = 0x40000000
PORT = 7000
WAIT = 2.0
LIBC = ctypes.CDLL(None, use_errno=True)


def enter(namespace: str) -> None:
    fd = os.open("/run/netns/%s" % namespace, os.O_RDONLY)
    try:
        if LIBC.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns %s" % namespace)
    finally:
        os.close(fd)


def socket_in(namespace: str, address: str, kind: int) -> socket.socket:
    enter(namespace)
    made = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, kind)
    made.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return made


def probe(source: str, destination: str, protocol: str, address: str) -> str:
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    with socket_in(destination, address, kind) as server, socket_in(source, address, kind) as client:
        server.bind((address, PORT))
        server.settimeout(WAIT)
        client.settimeout(WAIT)
        try:
            if protocol == "tcp":
                server.listen(1)
                client.connect((address, PORT))  # the kernel completes the handshake from the backlog
                server.accept()[0].close()
            else:
                client.sendto(b"probe", (address, PORT))
                server.recvfrom(100)
            return "got"
        except OSError:  # timed out or refused
            return "nothing"


def main() -> None:
    label = sys.argv[1]
    for line in sys.stdin:
        if line.strip():
            path, source, destination, protocol, address = line.split()
            print("PROBE %s %s %s %s" % (label, path, protocol, probe(source, destination, protocol, address)),
                  flush=True)


if __name__ == "__main__":
    main()
