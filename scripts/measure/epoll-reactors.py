#!/usr/bin/env python3
"""How echo-epoll's reactors share the work, and what the alternative not
taken (one listener shared with EPOLLEXCLUSIVE) would do. Three
subcommands:

  spread  echo-epoll --threads N --verbose: --held clients connect at once
          and stay, then --seq short clients one after another; the
          "reactor <i>: <peer>: connected" lines of the log say which
          reactor each went to (SO_REUSEPORT: the kernel hashes the
          client's address and port). A fresh server per repetition.
  cpu     echo-epoll --threads N --verbose under `echo-bench load --conns C
          --duration S`: per reactor, the connections it got (from the log)
          and the CPU its thread used (utime + stime of
          /proc/<pid>/task/<tid>/stat, thread names reactor-<i>), read
          before and after the load.
  model   The two designs side by side in Python, since echo-epoll has no
          EPOLLEXCLUSIVE variant: N forked reactors, each an epoll loop
          (level-triggered, accepting up to 64 per wake-up, echoing what it
          reads), either on one shared listener registered with
          EPOLLIN | EPOLLEXCLUSIVE (--mode exclusive) or each on its own
          SO_REUSEPORT listener (--mode reuseport). Three phases:
            idle  --seq short clients one after another, every reactor idle;
            held  --held clients connect at once and stay;
            busy  one client makes its reactor busy (while it is connected,
                  the reactor spends --work-ms of CPU after every batch of
                  events and never sleeps in epoll_wait, as a reactor whose
                  clients always have work for it would), then --seq short
                  clients one after another, each waiting at most 2 s for
                  its echo.
          Each reactor counts its accepts in shared memory; the parent reads
          the counts before and after each client to know who took it.

Run from the workspace root (the binaries are not rebuilt):
  python3 scripts/measure/epoll-reactors.py spread --threads 2 --held 64 --seq 1000 --repeat 3
  python3 scripts/measure/epoll-reactors.py cpu --threads 2 --conns 2 --seconds 3 --repeat 8
  python3 scripts/measure/epoll-reactors.py cpu --threads 2 --conns 50 --seconds 3 --repeat 3
  python3 scripts/measure/epoll-reactors.py model --mode exclusive --reactors 2
  python3 scripts/measure/epoll-reactors.py model --mode reuseport --reactors 2
--bin and --bench name the binaries (default target/release/echo-epoll and
target/release/echo-bench). Every wait is bounded; servers are stopped with
SIGTERM, the model's reactors with SIGKILL.
"""
import argparse
import mmap
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- echo-epoll

class Server:
    """echo-epoll with --verbose, its stderr in a temporary file."""

    def __init__(self, binary, threads):
        self.log = tempfile.TemporaryFile(mode="w+")
        args = [binary, "--addr", "127.0.0.1:0", "--verbose", "--threads", str(threads)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"listening on (\S+):(\d+)", line)
        if not m:
            self.stop()
            sys.exit(f"{binary}: no readiness line, got {line!r}")
        self.addr = (m.group(1), int(m.group(2)))
        # The readiness line comes before the group of listeners exists;
        # clients connecting before the "N reactors" line all go to reactor 0.
        if threads > 1:
            deadline = time.monotonic() + 10
            while "reactors, each on its own" not in self.read_log():
                if time.monotonic() > deadline:
                    self.stop()
                    sys.exit("no 'reactors, each on its own' line within 10 s")
                time.sleep(0.01)

    def read_log(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def tasks(self):
        """{thread name: (utime + stime) in seconds} for the server's threads."""
        out = {}
        base = f"/proc/{self.proc.pid}/task"
        for tid in os.listdir(base):
            try:
                with open(f"{base}/{tid}/stat") as f:
                    stat = f.read()
                with open(f"{base}/{tid}/comm") as f:
                    name = f.read().strip()
            except OSError:
                continue
            rest = stat.rsplit(")", 1)[1].split()
            out[f"{name}/{tid}"] = (int(rest[11]) + int(rest[12])) / CLK_TCK
        return out

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.read_log()


def per_reactor(log, peers, threads):
    """Connections per reactor, counting only the given peers."""
    counts = [0] * threads
    for m in re.finditer(r"^reactor (\d+): (\S+): connected$", log, re.M):
        if peers is None or m.group(2) in peers:
            counts[int(m.group(1))] += 1
    return counts


def echo_once(addr, payload=b"x", timeout=5.0):
    with socket.create_connection(addr, timeout=timeout) as s:
        me = "%s:%d" % s.getsockname()
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(len(payload) - len(got))
            if not chunk:
                raise RuntimeError("closed before the echo")
            got += chunk
        s.shutdown(socket.SHUT_WR)
        if s.recv(1) != b"":
            raise RuntimeError("bytes after the echo")
    return me


def spread(a):
    for rep in range(a.repeat):
        srv = Server(a.bin, a.threads)
        held, peers = [], set()
        for _ in range(a.held):
            s = socket.create_connection(srv.addr, timeout=5)
            s.settimeout(5)
            held.append(s)
            peers.add("%s:%d" % s.getsockname())
        for s in held:  # each echoed: its reactor has accepted it
            s.sendall(b"h")
            if s.recv(1) != b"h":
                raise RuntimeError("a held client got no echo")
        held_counts = per_reactor(srv.read_log(), peers, a.threads)
        for s in held:
            s.close()
        seq = {echo_once(srv.addr) for _ in range(a.seq)}
        seq_counts = per_reactor(srv.stop(), seq, a.threads)
        print(f"rep {rep + 1}: threads={a.threads}  {a.held} held at once: per reactor "
              f"{held_counts}   {a.seq} one after another: per reactor {seq_counts}")


def cpu(a):
    for rep in range(a.repeat):
        srv = Server(a.bin, a.threads)
        before = srv.tasks()
        load = subprocess.run(
            [a.bench, "load", "--addr", "%s:%d" % srv.addr, "--conns", str(a.conns),
             "--size", "64", "--duration", str(a.seconds)],
            capture_output=True, text=True, timeout=a.seconds + 60)
        after = srv.tasks()
        log = srv.stop()
        if load.returncode != 0:
            sys.exit(f"echo-bench load failed: {load.stderr.strip()[-500:]}")
        m = re.search(r"throughput\s+(\d+) msgs/s", load.stdout)
        rate = m.group(1) if m else "?"
        conns = per_reactor(log, None, a.threads)
        used = {k: after[k] - before.get(k, 0.0) for k in after}
        reactors = sorted((k, v) for k, v in used.items() if k.startswith("reactor-"))
        total = sum(v for _, v in reactors) or 1e-9
        parts = "  ".join(
            f"{k.split('/')[0]}: {conns[int(k.split('/')[0].split('-')[1])]} conns, "
            f"{v:.2f} s CPU ({100 * v / total:.0f} %)" for k, v in reactors)
        print(f"rep {rep + 1}: threads={a.threads} conns={a.conns} {a.seconds} s, "
              f"{rate} msgs/s  {parts}")


# ---------------------------------------------------------------- the model

def model_reactor(slot, listener, mode, counters, work_ms):
    """One reactor: an epoll loop over its listener and its clients. While
    a client that sent b"B" is connected, the reactor is busy: it spends
    work_ms of CPU after every batch of events and waits with no timeout,
    as a reactor whose clients always have work for it would."""
    ep = select.epoll()
    lfd = listener.fileno()
    flags = select.EPOLLIN | (select.EPOLLEXCLUSIVE if mode == "exclusive" else 0)
    ep.register(lfd, flags)
    conns = {}
    busy_fd = None
    while True:
        for fd, _ in ep.poll(0 if busy_fd is not None else -1):
            if fd == lfd:
                for _ in range(64):
                    try:
                        c, _ = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    c.setblocking(False)
                    ep.register(c.fileno(), select.EPOLLIN)
                    conns[c.fileno()] = c
                    old = struct.unpack_from("q", counters, slot * 8)[0]
                    struct.pack_into("q", counters, slot * 8, old + 1)
                continue
            c = conns[fd]
            try:
                data = c.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                ep.unregister(fd)
                c.close()
                del conns[fd]
                if fd == busy_fd:
                    busy_fd = None
                continue
            if data[:1] == b"B":
                busy_fd = fd
            # Small messages: the send buffer always has room.
            c.setblocking(True)
            c.sendall(data)
            c.setblocking(False)
        if busy_fd is not None:
            end = time.thread_time() + work_ms / 1000
            while time.thread_time() < end:
                pass


def accepts(counters, n):
    return [struct.unpack_from("q", counters, i * 8)[0] for i in range(n)]


def took(counters, n, before, deadline_s=2.0):
    """Which reactor's count moved since `before` (bounded wait)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        now = accepts(counters, n)
        moved = [i for i in range(n) if now[i] > before[i]]
        if moved:
            return moved[0], now
        time.sleep(0.0005)
    return None, accepts(counters, n)


def model(a):
    n = a.reactors
    counters = mmap.mmap(-1, 8 * n)  # MAP_SHARED | MAP_ANONYMOUS
    listeners = []
    if a.mode == "exclusive":
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(4096)
        lst.setblocking(False)
        listeners = [lst] * n
        addr = lst.getsockname()
    else:
        port = 0
        for _ in range(n):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(("127.0.0.1", port))
            s.listen(4096)
            s.setblocking(False)
            port = s.getsockname()[1]
            listeners.append(s)
        addr = ("127.0.0.1", port)
    pids = []
    for slot in range(n):
        pid = os.fork()
        if pid == 0:
            try:
                model_reactor(slot, listeners[slot], a.mode, counters, a.work_ms)
            finally:
                os._exit(0)
        pids.append(pid)
    for s in set(listeners):
        s.close()
    time.sleep(0.2)  # every reactor in its first epoll_wait
    try:
        # idle: one after another.
        got = [0] * n
        for _ in range(a.seq):
            before = accepts(counters, n)
            echo_once(addr)
            r, _ = took(counters, n, before)
            if r is not None:
                got[r] += 1
        print(f"{a.mode:9} reactors={n}  idle: {a.seq} one after another, per reactor {got}")

        # held: at once, and they stay.
        before = accepts(counters, n)
        held = [socket.create_connection(addr, timeout=5) for _ in range(a.held)]
        for s in held:
            s.settimeout(5)
            s.sendall(b"h")
            if s.recv(1) != b"h":
                raise RuntimeError("a held client got no echo")
        after = accepts(counters, n)
        print(f"{a.mode:9} reactors={n}  held: {a.held} at once, per reactor "
              f"{[after[i] - before[i] for i in range(n)]}")
        for s in held:
            s.close()

        # busy: one client makes its reactor work, fresh clients arrive.
        before = accepts(counters, n)
        busy = socket.create_connection(addr, timeout=5)
        busy.settimeout(5)
        busy.sendall(b"B")
        if busy.recv(1) != b"B":
            raise RuntimeError("the busy client got no echo")
        busy_reactor, _ = took(counters, n, before)
        lat = {"busy": [], "other": []}
        waited = 0
        for _ in range(a.seq):
            before = accepts(counters, n)
            t0 = time.monotonic()
            try:
                echo_once(addr, timeout=2.0)
                ms = (time.monotonic() - t0) * 1e3
            except (socket.timeout, OSError):
                ms = None
                waited += 1
            r, _ = took(counters, n, before, 0.5)
            if r is not None and ms is not None:
                lat["busy" if r == busy_reactor else "other"].append(ms)
        busy.close()

        def summary(xs):
            if not xs:
                return "none"
            xs = sorted(xs)
            return (f"{len(xs)}, echo p25 {xs[len(xs) // 4]:.2f} ms, p50 "
                    f"{xs[len(xs) // 2]:.2f} ms, max {xs[-1]:.1f} ms")

        print(f"{a.mode:9} reactors={n}  busy (reactor {busy_reactor} spends {a.work_ms:g} ms "
              f"of CPU per turn): {a.seq} fresh clients; to the busy reactor: "
              f"{summary(lat['busy'])}; to another: {summary(lat['other'])}; "
              f"no echo within 2 s: {waited}")
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ["spread", "cpu"]:
        p = sub.add_parser(name)
        p.add_argument("--bin", default="target/release/echo-epoll")
        p.add_argument("--bench", default="target/release/echo-bench")
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--repeat", type=int, default=3)
        if name == "spread":
            p.add_argument("--held", type=int, default=64)
            p.add_argument("--seq", type=int, default=1000)
        else:
            p.add_argument("--conns", type=int, default=2)
            p.add_argument("--seconds", type=float, default=3.0)
    p = sub.add_parser("model")
    p.add_argument("--mode", choices=["exclusive", "reuseport"], required=True)
    p.add_argument("--reactors", type=int, default=2)
    p.add_argument("--seq", type=int, default=200)
    p.add_argument("--held", type=int, default=64)
    p.add_argument("--work-ms", type=float, default=20.0)
    a = ap.parse_args()
    {"spread": spread, "cpu": cpu, "model": model}[a.cmd](a)


if __name__ == "__main__":
    main()
