"""A live stream from a server to the phone (think video: a frame every
20 ms, stamped with the time it was made), and its sender's rate policy.

    live_stream.py serve HOST PORT MODE OUT [FEED BOX SERVICE]
    live_stream.py recv HOST PORT SECONDS OUT [SSE_URL] [GROUP:PORT]

serve (the server, in the internet): accepts one connection and sends
frames at a rate. MODE `fixed` sends at 20 Mbit/s whatever happens (a
sender that cannot see the path: frames it cannot send wait in its own
queue). MODE `adaptive` subscribes to the relay's QoS feed (FEED host:port,
BOX, SERVICE) and follows it, as WebRTC's sender does when it sees its own
route change: on a handover notice it restarts from 1 Mbit/s and drops the
frames still queued (live content: late is useless); a rate estimate that
was not application-limited sets the rate to 0.8 of it; an
application-limited one (a lower bound) at or above 0.7 of the rate lets
it grow by a quarter, once a second, up to 20 Mbit/s. Its socket keeps at
most 16 KiB unsent (TCP_NOTSENT_LOWAT), so its queue is its own. OUT gets
the rate changes.

recv (the phone): reads the frames for SECONDS and writes OUT: each
frame's latency (arrival minus the time it was made, one clock: the
namespaces share it); with SSE_URL, the notices of the box page's event
stream; with GROUP:PORT, those of the PAN multicast announcement.
"""
import collections
import json
import socket
import struct
import sys
import threading
import time

HEADER = struct.Struct("!dI")
TICK = 0.02
MAX_BPS = 20_000_000
FLOOR_BPS = 1_000_000
TCP_NOTSENT_LOWAT = 25


def serve(host, port, mode, out, feed=None, box=None, service=None):
    lst = socket.create_server((host, int(port)))
    lst.settimeout(90)
    conn, _ = lst.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.setsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, 16384)
    conn.setblocking(False)
    started = time.monotonic()
    state = {"rate": MAX_BPS, "grown": 0.0, "handover": None, "flush": False}
    log = {"mode": mode, "rates": [[0.0, MAX_BPS // 1000, "start"]], "notices": 0,
           "dropped_frames": 0, "frames": 0, "error": None, "ended": None}
    lock = threading.Lock()

    def set_rate(bps, why):
        bps = int(max(FLOOR_BPS, min(MAX_BPS, bps)))
        if bps != state["rate"]:
            state["rate"] = bps
            log["rates"].append([round(time.monotonic() - started, 3), bps // 1000, why])

    def follow():
        try:
            s = socket.create_connection(tuple(feed.rsplit(":", 1)), timeout=10)
            s.settimeout(None)
            s.sendall((json.dumps({"box": box, "service": service}) + "\n").encode())
            f = s.makefile("r")
            answer = json.loads(f.readline())
            if not answer.get("ok"):
                raise RuntimeError(answer.get("error"))
            for line in f:
                n = json.loads(line)
                with lock:
                    log["notices"] += 1
                    h = n.get("handover") or {}
                    number = h.get("number")
                    if n.get("cause") != "current" and number is not None \
                            and number != state["handover"]:
                        state["handover"] = number
                        state["flush"] = True
                        set_rate(FLOOR_BPS, "handover to %s" % h.get("to"))
                        continue
                    state["handover"] = number
                    down = n.get("down")
                    if not down:
                        continue
                    bps = down["kbps"] * 1000
                    now = time.monotonic()
                    if not down["app_limited"]:
                        set_rate(0.8 * bps, "estimate %d kbit/s" % down["kbps"])
                    elif bps >= 0.7 * state["rate"] and now - state["grown"] >= 1.0:
                        state["grown"] = now
                        set_rate(state["rate"] * 1.25, "probe")
        except Exception as e:  # the feed is advice: the stream goes on
            with lock:
                log["error"] = "feed: %r" % e

    if mode == "adaptive":
        threading.Thread(target=follow, daemon=True).start()
    queue = collections.deque()
    pending = b""
    next_tick = time.monotonic()
    try:
        while True:
            now = time.monotonic()
            if now >= next_tick:
                next_tick += TICK
                with lock:
                    if state["flush"]:
                        log["dropped_frames"] += len(queue)
                        queue.clear()
                        state["flush"] = False
                    size = max(HEADER.size, int(state["rate"] * TICK / 8))
                queue.append(HEADER.pack(time.time(), size - HEADER.size) + bytes(size - HEADER.size))
                log["frames"] += 1
            while pending or queue:
                if not pending:
                    pending = queue.popleft()
                try:
                    n = conn.send(pending)
                except BlockingIOError:
                    break
                pending = pending[n:]
            time.sleep(max(0.0, min(0.005, next_tick - time.monotonic())))
    except (BrokenPipeError, ConnectionResetError) as e:
        # The phone stops reading after its SECONDS and closes: the end.
        log["ended"] = "stream: %r" % e
    finally:
        with open(out, "w") as f:
            json.dump(log, f)


def recv(host, port, seconds, out, sse_url=None, group=None):
    started = time.monotonic()
    result = {"samples": [], "frames": 0, "bytes": 0, "error": None,
              "sse": [], "multicast": []}
    lock = threading.Lock()

    def note(kind, n):
        h = n.get("handover") or {}
        with lock:
            result[kind].append({
                "t": round(time.monotonic() - started, 3),
                "delay_ms": int(time.time() * 1000) - n.get("at_unix_ms", 0),
                "cause": n.get("cause"), "handover": h.get("number"),
                "kind": h.get("kind"), "uplink": (n.get("uplink") or {}).get("name"),
                "down_kbps": (n.get("down") or {}).get("kbps"),
                "rtt_ms": n.get("rtt_ms"), "dropped": n.get("dropped", 0)})

    def sse():
        try:
            hostport, path = sse_url.split("//", 1)[1].split("/", 1)
            h, p = hostport.rsplit(":", 1)
            s = socket.create_connection((h, int(p)), timeout=10)
            s.settimeout(seconds + 30)
            s.sendall(("GET /%s HTTP/1.1\r\nHost: cbox\r\n\r\n" % path).encode())
            for line in s.makefile("r", encoding="utf-8", errors="replace"):
                if line.startswith("data:"):
                    note("sse", json.loads(line[5:]))
        except Exception as e:
            with lock:
                result["error"] = result["error"] or "sse: %r" % e

    def multicast():
        try:
            g, p = group.rsplit(":", 1)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("", int(p)))
            mreq = struct.pack("4s4s", socket.inet_aton(g), socket.inet_aton("0.0.0.0"))
            s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            while True:
                data, _ = s.recvfrom(65536)
                note("multicast", json.loads(data))
        except Exception as e:
            with lock:
                result["error"] = result["error"] or "multicast: %r" % e

    if sse_url and sse_url != "-":
        threading.Thread(target=sse, daemon=True).start()
    if group and group != "-":
        threading.Thread(target=multicast, daemon=True).start()
    s = socket.create_connection((host, int(port)), timeout=20)
    s.settimeout(1.0)
    buf = b""
    try:
        while time.monotonic() - started < seconds:
            try:
                chunk = s.recv(1 << 16)
            except socket.timeout:
                continue
            if not chunk:
                result["error"] = "closed by the far side"
                break
            buf += chunk
            while len(buf) >= HEADER.size:
                made, size = HEADER.unpack_from(buf)
                if len(buf) < HEADER.size + size:
                    break
                buf = buf[HEADER.size + size:]
                result["frames"] += 1
                result["bytes"] += HEADER.size + size
                result["samples"].append([round(time.monotonic() - started, 3),
                                          round((time.time() - made) * 1000, 1)])
    except OSError as e:
        result["error"] = "stream: %r" % e
    with lock, open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(*sys.argv[2:])
    else:
        a = sys.argv[2:]
        recv(a[0], a[1], float(a[2]), a[3], *(a[4:]))
