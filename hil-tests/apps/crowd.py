#!/usr/bin/env python3
"""A day of phones, compressed: what the rest of a PAN does beside the
scenario's own applications, with a JSON summary at the end.

    crowd.py phone BOX DNS_SERVER ECHO_PORT UDP_PORT SECONDS VIDEO_MBIT OUT
        DNS queries from a fresh random port every 100 ms; a short
        HTTPS-like exchange (connect, 300 bytes there and back, close)
        every 50 ms; a video-call-like UDP stream of 1200-byte datagrams at
        VIDEO_MBIT (faster than a thin uplink).
    crowd.py idle BOX ECHO_PORT COUNT SECONDS OUT
        COUNT connections opened and left idle (a phone that never closes
        its apps), then each checked: still open (one byte echoed) or
        refused by the box.
"""
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dns_query import query  # noqa: E402

NAME = "files.cbox.test"  # what the resolver next to the SNAPT knows (hil-tests pan.rs)


def dns_loop(server, until, out):
    asked = answered = 0
    while time.monotonic() < until:
        asked += 1
        try:
            if query(NAME, server, timeout=2.0):
                answered += 1
        except OSError:
            pass
        time.sleep(0.1)
    out.update(dns_asked=asked, dns_answered=answered)


def short_loop(box, port, until, out):
    ok = failed = 0
    worst = 0.0
    errors = []
    payload = os.urandom(300)
    while time.monotonic() < until:
        start = time.monotonic()
        try:
            with socket.create_connection((box, port), timeout=10) as s:
                s.settimeout(10)
                s.sendall(payload)
                got = b""
                while len(got) < len(payload):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
            if got == payload:
                ok += 1
            else:
                failed += 1
                errors.append(f"short answer ({len(got)} bytes) at {start:.1f}")
        except OSError as e:
            failed += 1
            errors.append(f"{e} at {start:.1f}")
        worst = max(worst, time.monotonic() - start)
        time.sleep(0.05)
    out.update(short_ok=ok, short_failed=failed, short_worst_s=round(worst, 3), short_errors=errors[:10])


def video_loop(box, port, until, mbit, out):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((box, port))
    s.setblocking(False)
    sent = echoed = 0
    gap = 1200 * 8 / (mbit * 1e6)
    nxt = time.monotonic()
    payload = b"v" * 1200
    while time.monotonic() < until:
        now = time.monotonic()
        while nxt <= now:
            try:
                s.send(payload)
                sent += 1
            except OSError:
                pass
            nxt += gap
        try:
            while True:
                s.recv(2048)
                echoed += 1
        except OSError:
            pass
        time.sleep(min(0.002, max(0.0, nxt - time.monotonic())))
    out.update(video_sent=sent, video_echoed=echoed)


def phone(box, dns, echo_port, udp_port, seconds, mbit, path):
    until = time.monotonic() + seconds
    out = {}
    threads = [
        threading.Thread(target=dns_loop, args=(dns, until, out)),
        threading.Thread(target=short_loop, args=(box, echo_port, until, out)),
        threading.Thread(target=video_loop, args=(box, udp_port, until, mbit, out)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(path, "w") as f:
        json.dump(out, f)


def idle(box, port, count, seconds, path):
    until = time.monotonic() + seconds
    conns = []
    for _ in range(count):
        try:
            conns.append(socket.create_connection((box, port), timeout=5))
        except OSError:
            pass
    time.sleep(max(0.0, until - time.monotonic()))
    held = 0
    for c in conns:
        try:
            c.settimeout(5)
            c.sendall(b"x")
            if c.recv(1) == b"x":
                held += 1
        except OSError:
            pass
        c.close()
    with open(path, "w") as f:
        json.dump({"idle_opened": len(conns), "idle_held": held}, f)


def main():
    mode = sys.argv[1]
    if mode == "phone":
        box, dns, echo_port, udp_port, seconds, mbit, path = sys.argv[2:9]
        phone(box, dns, int(echo_port), int(udp_port), float(seconds), float(mbit), path)
    elif mode == "idle":
        box, port, count, seconds, path = sys.argv[2:7]
        idle(box, int(port), int(count), float(seconds), path)
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
