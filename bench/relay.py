#!/usr/bin/env python3
"""A bare verifying relay: the ceiling of a cold pull through any cache on this machine.

    bench/relay.py LISTEN_PORT UPSTREAM_PORT MODE      (MODE: plain | hash)

It forwards each GET to the upstream on loopback and streams the response back, with nothing a
registry does besides: no disk, no routing, no authorisation. In `hash` mode it also SHA-256s
the body in a second thread while it forwards (OpenSSL, through hashlib, with SHA-NI where the
CPU has it) and holds the body's last byte back until the digest in the path matches, as a
verifying cache must. bench/cache-pull.sh times it next to a direct pull and to Wharf's cold
pull, so a figure for Wharf can be read against what verifying costs at all here.
"""
import hashlib
import queue
import socket
import sys
import threading

STEP = 1 << 20


def read_head(sock):
    """Bytes up to the end of an HTTP head and what came after it, or None at a closed socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        got = sock.recv(65536)
        if not got:
            return None
        data += got
    return data.split(b"\r\n\r\n", 1)


def relay(client, up_port, mode):
    req = read_head(client)
    if req is None:
        return
    line = req[0].split(b"\r\n", 1)[0].decode()
    path = line.split(" ")[1]
    up = socket.create_connection(("127.0.0.1", up_port))
    up.sendall(f"GET {path} HTTP/1.1\r\nHost: upstream\r\nConnection: close\r\n\r\n".encode())
    got = read_head(up)
    if got is None:
        return
    head, body = got
    length = 0
    for h in head.split(b"\r\n")[1:]:
        k, _, v = h.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    client.sendall(head + b"\r\n\r\n")
    want = path.rsplit("/", 1)[-1]
    jobs = queue.Queue(maxsize=8)
    result = {}

    def hasher():
        h = hashlib.sha256()
        while (b := jobs.get()) is not None:
            h.update(b)
        result["digest"] = "sha256:" + h.hexdigest()

    verify = mode == "hash" and want.startswith("sha256:")
    worker = threading.Thread(target=hasher) if verify else None
    if worker:
        worker.start()
    sent = 0
    held = b""  # the body's last byte: it goes out only once the body is verified
    data = body
    while data:
        if worker:
            jobs.put(data)
        cut = max(0, min(len(data), length - 1 - sent))
        client.sendall(data[:cut])
        sent += cut
        held += data[cut:]
        data = up.recv(STEP)
    if worker:
        jobs.put(None)
        worker.join()
        if result["digest"] != want:
            client.close()
            return
    client.sendall(held)
    client.close()


def main():
    port, up_port, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(16)
    while True:
        c, _ = srv.accept()
        threading.Thread(target=relay, args=(c, up_port, mode), daemon=True).start()


if __name__ == "__main__":
    main()
