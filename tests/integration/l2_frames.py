# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Raw Ethernet frames for the anti-spoofing kernel tests: build them, send them through an
AF_PACKET socket, and watch an interface for frames carrying a marker.

Run inside a network namespace:
    python l2_frames.py send IFACE HEX...        frames as given, in order
    python l2_frames.py sniff IFACE HEX FENCE    prints "ready", then how many frames held HEX before
                                                 one holding FENCE arrived (a frame the sender sends
                                                 last, that always passes: then nothing is in flight)
    python l2_frames.py listen ADDRESS PORT      prints "ready", then the first datagram (5 s at most)
    python l2_frames.py say ADDRESS PORT TEXT    one UDP datagram (ADDRESS may be fe80::1%eth0)
"""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import struct
import subprocess
import sys
import time
from typing import List, Mapping

ETH_P_ALL = 0x0003
HERE = os.path.abspath(__file__)


def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def ethernet(dst: str, src: str, ethertype: int, payload: bytes, tags: tuple = ()) -> bytes:
    """A frame; tags are (tpid, vlan id) pairs put in front of the ethertype (802.1Q, 802.1ad)."""
    header = mac_bytes(dst) + mac_bytes(src)
    for tpid, vid in tags:
        header += struct.pack("!HH", tpid, vid)
    return header + struct.pack("!H", ethertype) + payload


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload  # checksum 0: none (IPv4)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + udp


def ipv6(src: str, dst: str, next_header: int, body: bytes, hop_limit: int = 64) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(body), next_header, hop_limit,
                       ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed) + body


def _pseudo6(src: str, dst: str, next_header: int, body: bytes) -> bytes:
    return (ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
            + struct.pack("!I3xB", len(body), next_header))


def ipv6_udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    checksum = _checksum(_pseudo6(src, dst, 17, udp) + udp) or 0xFFFF
    return ipv6(src, dst, 17, udp[:6] + struct.pack("!H", checksum) + udp[8:])


def _tcp(sport: int, dport: int, flags: int, payload: bytes) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 5 << 4, flags, 64240, 0, 0) + payload


def ipv4_tcp(src: str, dst: str, sport: int, dport: int, flags: int, payload: bytes) -> bytes:
    """A TCP segment with the given flags (0x02 SYN, 0x03 SYN+FIN: INVALID for conntrack)."""
    segment = _tcp(sport, dport, flags, payload)
    pseudo = ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed + struct.pack("!xBH", 6, len(segment))
    segment = segment[:16] + struct.pack("!H", _checksum(pseudo + segment)) + segment[18:]
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(segment), 1, 0, 64, 6, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return header[:10] + struct.pack("!H", _checksum(header)) + header[12:] + segment


def ipv6_tcp(src: str, dst: str, sport: int, dport: int, flags: int, payload: bytes) -> bytes:
    segment = _tcp(sport, dport, flags, payload)
    segment = segment[:16] + struct.pack("!H", _checksum(_pseudo6(src, dst, 6, segment) + segment)) + segment[18:]
    return ipv6(src, dst, 6, segment)


def icmpv6(src: str, dst: str, kind: int, body: bytes) -> bytes:
    message = struct.pack("!BBH", kind, 0, 0) + body
    checksum = _checksum(_pseudo6(src, dst, 58, message) + message)
    return ipv6(src, dst, 58, message[:2] + struct.pack("!H", checksum) + message[4:], hop_limit=255)


def arp(op: int, sender_mac: str, sender_ip: str, target_mac: str, target_ip: str) -> bytes:
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, mac_bytes(sender_mac),
                       ipaddress.IPv4Address(sender_ip).packed, mac_bytes(target_mac),
                       ipaddress.IPv4Address(target_ip).packed)


def send(interface: str, *frames: bytes) -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((interface, 0))
        for frame in frames:
            sock.send(frame)


def sniff(interface: str, marker: bytes, fence: bytes, seconds: float = 20.0) -> int:
    """How many frames arriving on `interface` contain `marker` before one containing `fence`
    (`seconds` only bounds a run whose fence never comes: the caller then fails)."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as sock:
        sock.bind((interface, 0))
        print("ready", flush=True)
        seen, end = 0, time.monotonic() + seconds
        while time.monotonic() < end:
            if select.select([sock], [], [], max(0.0, end - time.monotonic()))[0]:
                data, address = sock.recvfrom(65535)
                if address[2] == socket.PACKET_OUTGOING:
                    continue
                if fence in data:
                    return seen
                seen += marker in data
        return -1


def _udp(address: str, port: str):
    family, kind, proto, _name, sockaddr = socket.getaddrinfo(address, int(port), type=socket.SOCK_DGRAM)[0]
    return socket.socket(family, kind, proto), sockaddr


def listen(address: str, port: str) -> str:
    sock, sockaddr = _udp(address, port)
    with sock:
        sock.bind(sockaddr)
        print("ready", flush=True)
        sock.settimeout(5)
        try:
            return sock.recv(100).decode()
        except socket.timeout:
            return ""


def say(address: str, port: str, text: str) -> None:
    sock, sockaddr = _udp(address, port)
    with sock:
        sock.sendto(text.encode(), sockaddr)


def received(sender: str, frame: bytes, mark: bytes, fence: bytes, fence_mark: bytes,
             watchers: Mapping[str, str]) -> List[str]:
    """From the host: the watchers (label -> network namespace) whose eth0 received `frame`, sent raw
    from the eth0 of namespace `sender`. The sender sends `fence` (a frame every check lets through,
    holding `fence_mark`) after it, and each watcher watches until the fence: what did not arrive was
    dropped, not late."""
    sniffers = {label: subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, HERE, "sniff", "eth0",
                                         mark.hex(), fence_mark.hex()], stdout=subprocess.PIPE, text=True)
                for label, ns in watchers.items()}
    for sniffer in sniffers.values():
        assert sniffer.stdout.readline().strip() == "ready"
    subprocess.run(["ip", "netns", "exec", sender, sys.executable, HERE, "send", "eth0", frame.hex(), fence.hex()],
                   check=True)
    counts = {label: int(sniffer.communicate()[0].strip()) for label, sniffer in sniffers.items()}
    assert -1 not in counts.values(), "a watcher never saw the fence: %s" % counts
    return sorted(label for label, count in counts.items() if count)


def main(argv) -> None:
    if argv[0] == "send":
        send(argv[1], *(bytes.fromhex(frame) for frame in argv[2:]))
    elif argv[0] == "sniff":
        print(sniff(argv[1], bytes.fromhex(argv[2]), bytes.fromhex(argv[3])), flush=True)
    elif argv[0] == "listen":
        print(listen(argv[1], argv[2]), flush=True)
    elif argv[0] == "say":
        say(argv[1], argv[2], argv[3])


if __name__ == "__main__":
    main(sys.argv[1:])
