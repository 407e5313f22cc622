#!/usr/bin/env python3
"""The thundering herd on a shared listener, shown rather than asserted.

W processes forked from one parent share one listening socket and wait for
connections in one of four ways:

  accept     blocking accept(2): what echo-prefork's shared-accept does
  poll       poll(2) on the listener, then a non-blocking accept
  epoll      an epoll instance per process, the listener added level-triggered
  epoll-excl the same with EPOLLEXCLUSIVE (Linux 4.5)

The parent then opens N connections one after another (each one sends a
byte, reads it back, closes), leaving the workers idle in between, and
reports per connection: the workers woken (their voluntary_ctxt_switches
moved, read from /proc) and the accepts that failed with EAGAIN (a worker
woken for a connection another worker took).

  python3 scripts/measure/prefork-herd.py --workers 4 --conns 200
"""
import argparse
import mmap
import os
import select
import signal
import socket
import struct
import time

MODES = ["accept", "poll", "epoll", "epoll-excl"]


def worker(listener, mode, slot, counters):
    """Serve one-byte echoes forever; count EAGAINs in counters[slot]."""
    blocking = mode == "accept"
    listener.setblocking(blocking)
    if mode == "poll":
        waiter = select.poll()
        waiter.register(listener, select.POLLIN)
        wait = lambda: waiter.poll()
    elif mode.startswith("epoll"):
        ep = select.epoll()
        flags = select.EPOLLIN | (select.EPOLLEXCLUSIVE if mode == "epoll-excl" else 0)
        ep.register(listener, flags)
        wait = lambda: ep.poll()
    else:
        wait = lambda: None
    while True:
        wait()
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            old = struct.unpack_from("q", counters, slot * 8)[0]
            struct.pack_into("q", counters, slot * 8, old + 1)
            continue
        conn.setblocking(True)
        data = conn.recv(16)
        if data:
            conn.sendall(data)
        conn.recv(16)  # EOF
        conn.close()


def vol(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches"):
                return int(line.split()[1])
    raise RuntimeError(pid)


def settled(pids, quiet=0.05, limit=2.0):
    deadline = time.monotonic() + limit
    last = [vol(p) for p in pids]
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = [vol(p) for p in pids]
        if now == last:
            return now
        last = now
    return last


def run(mode, workers, conns):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    addr = listener.getsockname()
    counters = mmap.mmap(-1, 8 * workers)  # MAP_SHARED | MAP_ANONYMOUS
    pids = []
    for slot in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                worker(listener, mode, slot, counters)
            finally:
                os._exit(0)
        pids.append(pid)
    listener.close()
    time.sleep(0.2)  # let every worker reach its wait; settled() checks too
    before = settled(pids)
    woken_total = 0
    herd_conns = 0
    for _ in range(conns):
        with socket.create_connection(addr, timeout=5) as s:
            s.settimeout(5)
            s.sendall(b"x")
            assert s.recv(1) == b"x"
            s.shutdown(socket.SHUT_WR)
            s.recv(1)
        after = settled(pids)
        woken = sum(1 for b, a in zip(before, after) if a > b)
        woken_total += woken
        herd_conns += woken > 1
        before = after
    eagain = sum(struct.unpack_from("q", counters, i * 8)[0] for i in range(workers))
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    print(f"{mode:10} workers={workers} conns={conns}: workers woken per "
          f"connection {woken_total / conns:.2f}, connections that woke more "
          f"than one {herd_conns}, failed accepts (EAGAIN) per connection "
          f"{eagain / conns:.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--conns", type=int, default=200)
    ap.add_argument("--mode", choices=MODES)
    a = ap.parse_args()
    for m in [a.mode] if a.mode else MODES:
        run(m, a.workers, a.conns)


if __name__ == "__main__":
    main()
