#!/usr/bin/env python3
"""What a select(2) server does at descriptor 1024, seen from the clients,
from the server's log and from its descriptor table.

    python3 scripts/measure/select-fd-limit.py [--bin PATH] [--clients 1100]

Starts the server (default target/release/echo-select; a `.py` path runs
under this Python, e.g. twins/select_echo.py) on port 0 with --verbose,
echoes one first client so that the loop holds all its own descriptors,
then connects the others one after another (so the kernel hands the
server the lowest free descriptor to each, in order), sends a short
message on each and waits, bounded, for its fate:

  echoed      the message came back
  closed      EOF or a reset before any byte: the server refused it
  unanswered  nothing by the deadline (a select server must never do this)

While the crowd is still connected it maps every served client to the
server-side descriptor that holds it (/proc/<pid>/fd gives the socket
inode, /proc/net/tcp the inode's ports), so the first refused client is
placed next to the highest descriptor served. It quotes the server's
first refusal line (echo-select logs one per refusal with --verbose) and
its open-files limit, to show which of the two stopped it
(--server-nofile N lowers that limit below 1,024 to see the other one
come first). Then the crowd leaves and a fresh client must be served
within 10 s.

Last, from this process's side: it now holds more than 1,024 sockets
itself, so a new socket pair gets descriptors past FD_SETSIZE. Python's
select.select refuses them (the fd_set type has 1,024 bits), while the
raw select(2) system call, given a bitmap long enough, watches them: the
limit is in the type user space passes, not in the kernel.

Needs `ulimit -n` above twice --clients (hard limit; this raises its own
soft limit to it) and a release build, or --bin pointing at one.
"""

import argparse
import ctypes
import ctypes.util
import os
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DEFAULT_BIN = os.path.join(ROOT, "target", "release", "echo-select")
FD_SETSIZE = 1024
REFUSAL = re.compile(r"^(\S+): refused, descriptor (\d+) ")
SHED = re.compile(r"refused, out of descriptors")


def server_command(path):
    cmd = [sys.executable, path] if path.endswith(".py") else [path]
    return cmd + ["--addr", "127.0.0.1:0", "--verbose"]


def open_files_limit(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return soft, hard
    return "?", "?"


def socket_ports(pid):
    """inode -> (local port, remote port) for the TCP sockets in pid's namespace."""
    ports = {}
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            local, remote, inode = cols[1], cols[2], int(cols[9])
            ports[inode] = (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16))
    return ports


def descriptors(pid):
    """fd -> link target (socket:[inode], /dev/null, pipe:[...], ...)."""
    out = {}
    base = f"/proc/{pid}/fd"
    for name in os.listdir(base):
        try:
            out[int(name)] = os.readlink(f"{base}/{name}")
        except OSError:
            pass  # closed while we looked
    return out


def fate(sock, msg, deadline):
    """'echoed', 'eof', 'reset' or 'unanswered' for one client."""
    try:
        sock.sendall(msg)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server's close arrived first; the read tells the rest
    got = b""
    while len(got) < len(msg):
        left = deadline - time.monotonic()
        if left <= 0:
            return "unanswered"
        sock.settimeout(left)
        try:
            chunk = sock.recv(len(msg) - len(got))
        except ConnectionResetError:
            return "reset"
        except socket.timeout:
            return "unanswered"
        if not chunk:
            return "eof" if not got else "unanswered"
        got += chunk
    if got != msg:
        raise SystemExit(f"wrong echo: sent {msg!r}, got {got!r}")
    return "echoed"


def raw_select_writable(fd):
    """select(2) itself, with a bitmap of fd + 1 bits: is `fd` writable?"""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    words = fd // 64 + 1
    bits = (ctypes.c_ulong * words)()
    bits[fd // 64] |= 1 << (fd % 64)

    class Timeval(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]

    zero = Timeval(0, 0)
    n = libc.select(fd + 1, None, ctypes.byref(bits), None, ctypes.byref(zero))
    if n < 0:
        return f"failed: {os.strerror(ctypes.get_errno())}"
    return f"returned {n}, bit {fd} {'set' if bits[fd // 64] >> (fd % 64) & 1 else 'clear'}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", default=DEFAULT_BIN, help="server binary or .py twin")
    p.add_argument("--clients", type=int, default=1100)
    p.add_argument("--deadline", type=float, default=20.0, help="seconds for all round trips")
    p.add_argument("--server-nofile", type=int, metavar="N",
                   help="start the server with RLIMIT_NOFILE lowered to N (soft and hard), "
                        "to see which of the two limits comes first")
    args = p.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2 * args.clients + 64:
        raise SystemExit(f"open-files hard limit {hard} too low: raise it (ulimit -n 20000)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    def lower_nofile():
        if args.server_nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (args.server_nofile, args.server_nofile))

    server = subprocess.Popen(server_command(args.bin), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, preexec_fn=lower_nofile)
    log = []
    reader = threading.Thread(target=lambda: log.extend(server.stderr), daemon=True)
    reader.start()
    crowd = []
    try:
        line = server.stdout.readline()
        if not line.startswith("listening on "):
            raise SystemExit(f"no readiness line: {line!r}")
        host, port = line.split()[-1].rsplit(":", 1)
        addr = (host, int(port))
        pid = server.pid
        print(f"server: {' '.join(server_command(args.bin)[:-3])} (pid {pid})")
        s_soft, s_hard = open_files_limit(pid)
        print(f"server's open-files limit (RLIMIT_NOFILE): soft {s_soft}, hard {s_hard}")

        first = socket.create_connection(addr, timeout=5)
        if fate(first, b"first", time.monotonic() + 5) != "echoed":
            raise SystemExit("the first client was not echoed")
        own = descriptors(pid)
        below = sorted(fd for fd in own if fd < FD_SETSIZE)
        print(f"descriptors held after one client: {len(own)} "
              f"({', '.join(f'{fd} {own[fd]}' for fd in below)})")
        room = FD_SETSIZE - len(below)
        print(f"room left below FD_SETSIZE ({FD_SETSIZE}): {room} clients")

        start = time.monotonic()
        for _ in range(args.clients):
            crowd.append(socket.create_connection(addr, timeout=5))
        index_of_port = {c.getsockname()[1]: i for i, c in enumerate(crowd)}
        deadline = time.monotonic() + args.deadline
        fates = [fate(c, f"client {i}\n".encode(), deadline) for i, c in enumerate(crowd)]
        took = time.monotonic() - start
        # A server that crashed has closed every socket before the kernel
        # reports its exit: wait for that, bounded, before calling it alive.
        try:
            server.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass
        alive = server.poll() is None

        # Which server descriptor holds which client, while they are open.
        fd_of_client = {}
        if alive:
            ports = socket_ports(pid)
            for fd, target in descriptors(pid).items():
                m = re.fullmatch(r"socket:\[(\d+)\]", target)
                if m and int(m.group(1)) in ports:
                    _, remote = ports[int(m.group(1))]
                    if remote in index_of_port:
                        fd_of_client[index_of_port[remote]] = fd

        counts = {k: fates.count(k) for k in ("echoed", "eof", "reset", "unanswered")}
        print(f"{args.clients} clients connected one after another, one message each, "
              f"{took:.1f} s: {counts['echoed']} echoed, "
              f"{counts['eof'] + counts['reset']} closed by the server "
              f"({counts['eof']} EOF, {counts['reset']} reset), "
              f"{counts['unanswered']} unanswered")
        served = [i for i, f in enumerate(fates) if f == "echoed"]
        refused = [i for i, f in enumerate(fates) if f in ("eof", "reset")]
        if served:
            contiguous = served == list(range(len(served)))
            fds = [fd_of_client[i] for i in served if i in fd_of_client]
            print(f"echoed: clients 0 to {served[-1]}"
                  f"{'' if contiguous else ' (not contiguous)'}; their server-side "
                  f"descriptors {min(fds) if fds else '?'} to {max(fds) if fds else '?'}"
                  f" ({len(fds)} found in /proc)")
        if refused:
            print(f"closed: clients {refused[0]} to {refused[-1]}")
        # The log is read by another thread: give it a moment (bounded) to
        # catch up with the refusals the clients already saw.
        settle = time.monotonic() + 2
        while (sum(1 for l in list(log) if REFUSAL.match(l)) < len(refused)
               and time.monotonic() < settle and server.poll() is None):
            time.sleep(0.05)
        refusals = [l.rstrip("\n") for l in list(log) if REFUSAL.match(l)]
        if refusals:
            fds = [int(REFUSAL.match(l).group(2)) for l in refusals]
            print(f"server's refusal lines: {len(refusals)}, descriptors {min(fds)} to {max(fds)}")
            print(f"first: {refusals[0]}")
            peer_port = int(REFUSAL.match(refusals[0]).group(1).rsplit(":", 1)[1])
            if peer_port in index_of_port:
                print(f"  ... which is client {index_of_port[peer_port]}")
        shed = [l.rstrip("\n") for l in list(log) if SHED.search(l)]
        if shed:
            print(f"server's out-of-descriptors lines (EMFILE, shed with the spare): {len(shed)}")
            print(f"first: {shed[0]}")
        if not alive:
            status = server.wait(timeout=10)
            tail = [l.rstrip("\n") for l in log
                    if "panicked" in l or "fd must" in l or l.startswith("error")]
            print(f"the server died: exit status {status}")
            for l in tail[:3]:
                print(f"  stderr: {l}")

        # From this process's side: more than 1,024 sockets open here too.
        a, b = socket.socketpair()
        print(f"this client process: new socket pair on descriptors {a.fileno()}, {b.fileno()}")
        try:
            select.select([], [a], [], 0)
            print("  Python select.select: accepted it")
        except ValueError as e:
            print(f"  Python select.select: ValueError: {e}")
        print(f"  raw select(2), nfds {a.fileno() + 1}, a bitmap of {a.fileno() // 64 + 1} words: "
              f"{raw_select_writable(a.fileno())}")
        a.close()
        b.close()

        for c in crowd:
            c.close()
        crowd.clear()
        first.close()
        if server.poll() is None:
            fresh_until = time.monotonic() + 10
            while True:
                c = socket.create_connection(addr, timeout=5)
                got = fate(c, b"fresh", min(fresh_until, time.monotonic() + 2))
                c.close()
                if got == "echoed" or time.monotonic() > fresh_until:
                    break
                time.sleep(0.05)  # a retry pause: the crowd's closes are still being read
            print(f"after the crowd left, a fresh client: {got}")
            server.send_signal(signal.SIGTERM)
            print(f"server exit status after SIGTERM: {server.wait(timeout=15)}")
    finally:
        for c in crowd:
            c.close()
        if server.poll() is None:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
