"""Echo server for the simulated world's interactive and UDP streams.

    echo_server.py HOST PORT [mptcp|udp]
"""
import socket
import sys
import threading


def handle(conn):
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            conn.sendall(data)


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    mode = sys.argv[3] if len(sys.argv) > 3 else "tcp"
    if mode == "udp":
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((host, port))
        while True:
            data, peer = udp.recvfrom(65536)
            udp.sendto(data, peer)
    mptcp = mode == "mptcp"
    # An MPTCP server keeps its listening socket open: subflows join through it.
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262 if mptcp else 0)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen()
    while True:
        conn, _ = srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
