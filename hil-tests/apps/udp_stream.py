"""The phone's UDP stream: a 64-byte datagram every 20 ms to HOST:PORT, each
echoed by the far side. Datagrams are never replayed by the relay, so some
vanish while no tunnel carries data; what must hold is that none comes back
twice or altered and that the stream flows again after the events. Writes a
JSON summary: sent, echoed, lost, duplicated, corrupted, the largest gap
between two echoes, and echoes seen in the last second.

    udp_stream.py HOST PORT SECONDS OUT
"""
import json
import os
import socket
import sys
import threading
import time

host, port, seconds, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
SIZE = 64
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((host, port))
s.settimeout(0.5)
result = {"sent": 0, "echoed": 0, "lost": 0, "duplicated": 0, "corrupted": 0,
          "max_gap_ms": 0.0, "echoed_last_second": 0, "error": None}
seen = set()
arrivals = []


def datagram(i):
    return i.to_bytes(4, "big") + bytes((i * 13 + k) % 253 for k in range(SIZE - 4))


done = threading.Event()


def reader():
    while not done.is_set():
        try:
            data = s.recv(65536)
        except socket.timeout:
            continue
        except OSError as e:
            # ICMP port unreachable while the relay restarts: not fatal for UDP.
            result["error"] = result["error"] or str(e)
            continue
        now = time.monotonic()
        i = int.from_bytes(data[:4], "big") if len(data) >= 4 else -1
        if data != datagram(i):
            result["corrupted"] += 1
        elif i in seen:
            result["duplicated"] += 1
        else:
            seen.add(i)
            arrivals.append(now)
            result["echoed"] += 1


t = threading.Thread(target=reader, daemon=True)
t.start()
start = time.monotonic()
end = start + seconds
i = 0
while time.monotonic() < end:
    try:
        s.send(datagram(i))
    except OSError:
        pass  # counted as lost if it never comes back
    result["sent"] += 1
    i += 1
    time.sleep(0.02)
time.sleep(1.0)  # the last echoes are on their way
done.set()
t.join(timeout=2)
last = arrivals[0] if arrivals else start
for a in arrivals:
    result["max_gap_ms"] = max(result["max_gap_ms"], (a - last) * 1000)
    last = a
result["echoed_last_second"] = sum(1 for a in arrivals if a >= end - 1.0)
result["lost"] = result["sent"] - result["echoed"]
result["error"] = None if result["echoed_last_second"] else (result["error"] or "no echoes at the end")
with open(out + ".tmp", "w") as f:
    json.dump(result, f)
os.replace(out + ".tmp", out)
