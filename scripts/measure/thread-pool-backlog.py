#!/usr/bin/env python3
"""Where clients wait when the thread pool is full under `--when-full wait`.

Starts target/release/echo-thread-pool with --workers 1 --queue 1, holds
one served client, then opens N more connections at once (non-blocking)
and counts, after a bounded wait, how many handshakes completed (the
kernel's accept queue, sized by the listen backlog) and how many are still
in progress (SYNs dropped and being retried by the client).

Usage: python3 scripts/measure/thread-pool-backlog.py [N] [SECONDS]
Needs `cargo build --release --workspace --bins` and `ulimit -n` above N.
"""
import errno
import os
import select
import socket
import subprocess
import sys
import time

n = int(sys.argv[1]) if len(sys.argv) > 1 else 4300
wait_s = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
server = subprocess.Popen(
    [os.path.join(root, "target/release/echo-thread-pool"), "--addr", "127.0.0.1:0",
     "--workers", "1", "--queue", "1"],
    stdout=subprocess.PIPE, text=True)
try:
    line = server.stdout.readline()
    host, port = line.split()[-1].rsplit(":", 1)
    addr = (host, int(port))
    # The one client a worker serves, for the whole measurement.
    held = socket.create_connection(addr, timeout=5)
    held.sendall(b"x")
    assert held.recv(1) == b"x", "the first client was not echoed"

    pending = {}
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        err = s.connect_ex(addr)
        assert err in (0, errno.EINPROGRESS), os.strerror(err)
        pending[s.fileno()] = s
    done, failed = [], []
    poller = select.poll()
    for fd in pending:
        poller.register(fd, select.POLLOUT)
    deadline = time.monotonic() + wait_s
    while pending and time.monotonic() < deadline:
        for fd, _ in poller.poll(100):
            s = pending.pop(fd)
            poller.unregister(fd)
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            (done if err == 0 else failed).append(s)
    print(f"{n} connects to a full pool (1 worker busy, queue 1, wait policy), "
          f"after {wait_s:.1f} s: {len(done)} established, {len(failed)} failed, "
          f"{len(pending)} still connecting (SYN dropped, being retried)")
    with open("/proc/sys/net/core/somaxconn") as f:
        print(f"net.core.somaxconn = {f.read().strip()}")
finally:
    server.terminate()
    server.wait(timeout=10)
