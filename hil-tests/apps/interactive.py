"""The phone's interactive stream: a 100-byte record every 20 ms through the
box, echoed by the internet side. Writes a JSON summary: records sent and
echoed intact, the largest gap between two echoes (the application-visible
stall), and any damage (lost, duplicated, reordered or corrupted records)."""
import json
import socket
import sys
import threading
import time

host, port, seconds, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
REC = 100
s = socket.create_connection((host, port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
result = {"sent": 0, "echoed": 0, "max_gap_ms": 0.0, "damaged": 0}


def record(i):
    head = i.to_bytes(4, "big")
    return head + bytes((i * 7 + k) % 251 for k in range(REC - 4))


def reader():
    buf = b""
    expect = 0
    last = time.monotonic()
    while True:
        data = s.recv(65536)
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
            result["max_gap_ms"] = max(result["max_gap_ms"], (now - last) * 1000)
            last = now
            result["echoed"] += 1


t = threading.Thread(target=reader, daemon=True)
t.start()
end = time.monotonic() + seconds
i = 0
while time.monotonic() < end:
    s.sendall(record(i))
    result["sent"] += 1
    i += 1
    time.sleep(0.02)
s.shutdown(socket.SHUT_WR)
t.join(timeout=10)
with open(out, "w") as f:
    json.dump(result, f)
