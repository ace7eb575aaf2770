"""A bulk download for the baselines (which have no relay and, for MPTCP,
need an MPTCP socket at both ends — curl has none here): a minimal HTTP
server of one file and a client that measures what it got.

    bulk.py serve HOST PORT FILE [mptcp]
    bulk.py get HOST PORT OUT [mptcp]   # GET /, JSON summary to OUT:
                                        # bytes, seconds, mbit_s, error
"""
import json
import os
import socket
import sys
import threading
import time

MPTCP = 262


def sock(mptcp):
    return socket.socket(socket.AF_INET, socket.SOCK_STREAM, MPTCP if mptcp else 0)


def serve(host, port, path, mptcp):
    srv = sock(mptcp)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen()

    def handle(conn):
        with conn, open(path, "rb") as f:
            req = b""
            while b"\r\n\r\n" not in req and len(req) < 8192:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                req += chunk
            size = os.fstat(f.fileno()).st_size
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            try:
                conn.sendfile(f)
            except OSError:
                return

    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def get(host, port, out, mptcp):
    result = {"bytes": 0, "seconds": None, "mbit_s": None, "error": None}
    started = time.monotonic()
    try:
        s = sock(mptcp)
        s.settimeout(35)
        s.connect((host, port))
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(65536)
            if not chunk:
                raise OSError("closed before the headers")
            head += chunk
        body = len(head.split(b"\r\n\r\n", 1)[1])
        while True:
            chunk = s.recv(262144)
            if not chunk:
                break
            body += len(chunk)
        result["bytes"] = body
    except OSError as e:
        result["error"] = str(e)
    secs = time.monotonic() - started
    result["seconds"] = round(secs, 3)
    if result["bytes"] and secs > 0:
        result["mbit_s"] = round(result["bytes"] * 8 / secs / 1e6, 2)
    with open(out + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(out + ".tmp", out)


def main():
    cmd, host, port, arg = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    mptcp = sys.argv[5:6] == ["mptcp"]
    if cmd == "serve":
        serve(host, port, arg, mptcp)
    elif cmd == "get":
        get(host, port, arg, mptcp)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
