"""The phone's interactive stream: a 100-byte record every 20 ms, echoed by
the far side. Writes a JSON summary: records sent and echoed intact, the
largest gap between two echoes (the application-visible stall), the
round trips of the records (median and 99th percentile: what a keystroke
feels beside a download), and any damage (lost, duplicated, reordered or
corrupted records).

    interactive.py HOST PORT SECONDS OUT [mptcp]   # a TCP (or MPTCP) socket
    interactive.py - - SECONDS OUT -- CMD ARGS...  # CMD's stdin/stdout, e.g.
                                                   # `ssh … cat` typing through
                                                   # an SSH session
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time

host, port, seconds, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
rest = sys.argv[5:]
REC = 100
result = {"sent": 0, "echoed": 0, "max_gap_ms": 0.0, "damaged": 0, "error": None,
          "broken_at_s": None, "exit_code": None, "rtt_p50_ms": None, "rtt_p99_ms": None}
# When each record was sent, by number; round trips of the echoed ones.
sent_at = {}
rtts = []
started = time.monotonic()


def broke(e):
    if result["error"] is None:
        result["error"] = str(e)
        result["broken_at_s"] = round(time.monotonic() - started, 2)


if rest[:1] == ["--"]:
    # A program carries the records (its stdin to the far side and back).
    child = subprocess.Popen(rest[1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)

    def send(data):
        child.stdin.write(data)

    def recv():
        return os.read(child.stdout.fileno(), 65536)

    def finish():
        child.stdin.close()
else:
    child = None
    mptcp = rest[:1] == ["mptcp"]
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262 if mptcp else 0)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.connect((host, int(port)))
    # A broken connection stops the application, as it would a phone app.
    s.settimeout(35)  # longer than any outage a session survives (Z = 30 s)

    def send(data):
        s.sendall(data)

    def recv():
        return s.recv(65536)

    def finish():
        s.shutdown(socket.SHUT_WR)


def record(i):
    head = i.to_bytes(4, "big")
    return head + bytes((i * 7 + k) % 251 for k in range(REC - 4))


def reader():
    buf = b""
    expect = 0
    # Gaps count from the first echo: an SSH session's login is not a stall.
    last = None
    while True:
        try:
            data = recv()
        except OSError as e:
            broke(e)
            return
        if not data:
            return
        buf += data
        while len(buf) >= REC:
            rec, buf = buf[:REC], buf[REC:]
            i = int.from_bytes(rec[:4], "big")
            if i != expect or rec != record(i):
                result["damaged"] += 1
            expect = i + 1
            now = time.monotonic()
            if i in sent_at:
                rtts.append(((now - sent_at.pop(i)) * 1000, now - started))
            if last is not None:
                result["max_gap_ms"] = max(result["max_gap_ms"], (now - last) * 1000)
            last = now
            result["echoed"] += 1


t = threading.Thread(target=reader, daemon=True)
t.start()
end = time.monotonic() + seconds
i = 0
while time.monotonic() < end and result["error"] is None:
    try:
        sent_at[i] = time.monotonic()
        send(record(i))
    except OSError as e:
        broke(e)
        break
    result["sent"] += 1
    i += 1
    time.sleep(0.02)
try:
    finish()
except OSError as e:
    broke(e)
t.join(timeout=10)
if t.is_alive() and result["echoed"] < result["sent"]:
    broke("echoes stopped arriving")
if child is not None:
    try:
        result["exit_code"] = child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        result["exit_code"] = child.wait()
    if result["exit_code"] != 0:
        broke(f"{rest[1]} exited with {result['exit_code']}")
if rtts:
    rtts.sort()
    result["rtt_p50_ms"] = round(rtts[len(rtts) // 2][0], 2)
    result["rtt_p99_ms"] = round(rtts[min(len(rtts) - 1, len(rtts) * 99 // 100)][0], 2)
    # The slowest 1 % with when they came back (s since the start): where
    # the tail comes from.
    result["slowest"] = [[round(t, 2), round(r, 1)] for r, t in rtts[-max(1, len(rtts) // 100):]]
# Written whole, then renamed: the runner waits for the file to appear and
# must never read it half-written.
with open(out + ".tmp", "w") as f:
    json.dump(result, f)
os.replace(out + ".tmp", out)
