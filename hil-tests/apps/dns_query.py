#!/usr/bin/env python3
"""Asks SERVER (UDP port 53) for NAME's IPv4 address, as a phone's resolver
would, and prints the answers. Exit 1 without an answer.

    dns_query.py NAME SERVER
"""
import random
import socket
import struct
import sys


def query(name, server, timeout=3.0):
    qid = random.randrange(65536)
    packet = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        packet += bytes([len(label)]) + label.encode()
    packet += b"\0" + struct.pack("!HH", 1, 1)  # A, IN
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, (server, 53))
        reply, _ = s.recvfrom(4096)
    rid, flags, qd, an, _, _ = struct.unpack("!HHHHHH", reply[:12])
    if rid != qid or flags & 0x000F:
        return []
    pos = 12
    for _ in range(qd):  # skip the question
        while reply[pos] != 0:
            pos += 1 + reply[pos]
        pos += 5
    out = []
    for _ in range(an):
        if reply[pos] & 0xC0 == 0xC0:
            pos += 2
        else:
            while reply[pos] != 0:
                pos += 1 + reply[pos]
            pos += 1
        rtype, _, _, rdlen = struct.unpack("!HHIH", reply[pos:pos + 10])
        pos += 10
        if rtype == 1 and rdlen == 4:
            out.append(socket.inet_ntoa(reply[pos:pos + 4]))
        pos += rdlen
    return out


def main():
    name, server = sys.argv[1], sys.argv[2]
    for attempt in range(3):
        try:
            answers = query(name, server)
            if answers:
                print(" ".join(answers))
                return 0
        except OSError as e:
            print(f"attempt {attempt + 1}: {e}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
