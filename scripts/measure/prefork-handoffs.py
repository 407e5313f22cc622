#!/usr/bin/env python3
"""What differs between echo-prefork's three hand-offs, measured on the
real binary over loopback. Three experiments, one per subcommand:

  wakeups  Connections opened and closed one after another, the workers idle
           in between. Before and after each one, every worker's
           voluntary_ctxt_switches (/proc/<pid>/status) is read: the number
           of workers whose count moved is the number woken for that
           connection (1 if there is no thundering herd).
  balance  N short connections one after another, with --verbose: how many
           each worker served, counted from the "worker <pid>: <peer>:
           connected" lines of the log.
  busy     --held clients connect and stay (1 by default: one worker busy,
           the others idle); then P fresh clients, one at a time, each sends
           one byte and waits at most --patience for its echo. Counts the
           fresh clients that waited, and the served ones' latency.

Run from the workspace root after `cargo build --release -p echo-prefork`:
  python3 scripts/measure/prefork-handoffs.py wakeups --workers 4 --conns 200
  python3 scripts/measure/prefork-handoffs.py balance --workers 4 --conns 1000
  python3 scripts/measure/prefork-handoffs.py busy --workers 2 --probes 100
  python3 scripts/measure/prefork-handoffs.py busy --workers 2 --held 2 --probes 20
Each runs the three hand-offs (or --handoff H) and prints one line each.
Every wait is bounded; the server is stopped with SIGTERM at the end.
"""
import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

HANDOFFS = ["shared-accept", "reuseport", "pass-fd"]
BIN = "target/release/echo-prefork"


class Server:
    def __init__(self, handoff, workers, verbose=False):
        args = [BIN, "--addr", "127.0.0.1:0", "--workers", str(workers),
                "--handoff", handoff]
        if verbose:
            args.append("--verbose")
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True)
        line = self.proc.stdout.readline()  # the contract's readiness line
        m = re.match(r"listening on (\S+):(\d+)", line)
        if not m:
            self.stop()
            sys.exit(f"{BIN}: no readiness line, got {line!r}")
        self.addr = (m.group(1), int(m.group(2)))
        deadline = time.monotonic() + 5
        while len(self.workers()) < workers:
            if time.monotonic() > deadline:
                self.stop()
                sys.exit(f"only {len(self.workers())} of {workers} workers")
            time.sleep(0.01)

    def workers(self):
        """Pids whose parent is the server: its workers."""
        kids = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            # the field after the ")" that closes the command name
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid:
                kids.append(int(d))
        return sorted(kids)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.seek(0)
        return self.log.read()


def vol_switches(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches"):
                return int(line.split()[1])
    raise RuntimeError(f"no voluntary_ctxt_switches for {pid}")


def snapshot(pids):
    return {p: vol_switches(p) for p in pids}


def settled(pids, quiet=0.05, limit=2.0):
    """The counts once they stop moving for `quiet` seconds (bounded)."""
    deadline = time.monotonic() + limit
    last = snapshot(pids)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = snapshot(pids)
        if now == last:
            return now
        last = now
    return last


def one_echo(addr, payload=b"x", timeout=5.0):
    """Connect, send, read the echo, half-close, read EOF, close; returns
    the client's address as the server's log prints it."""
    with socket.create_connection(addr, timeout=timeout) as s:
        me = "%s:%d" % s.getsockname()
        s.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(len(payload) - len(got))
            if not chunk:
                raise RuntimeError("closed before the echo")
            got += chunk
        assert got == payload, (got, payload)
        s.shutdown(socket.SHUT_WR)
        if s.recv(1) != b"":
            raise RuntimeError("bytes after the echo")
    return me


def wakeups(handoff, workers, conns):
    srv = Server(handoff, workers)
    pids = srv.workers()
    everyone = pids + [srv.proc.pid]
    woken_hist = {}
    serving_sw = others_sw = parent_sw = 0
    before = settled(everyone)
    for _ in range(conns):
        one_echo(srv.addr)
        after = settled(everyone)
        d = {p: after[p] - before[p] for p in everyone}
        worker_d = sorted((d[p] for p in pids), reverse=True)
        woken = sum(1 for x in worker_d if x > 0)
        woken_hist[woken] = woken_hist.get(woken, 0) + 1
        serving_sw += worker_d[0]
        others_sw += sum(worker_d[1:])
        parent_sw += d[srv.proc.pid]
        before = after
    srv.stop()
    hist = ", ".join(f"{k} woken: {v}" for k, v in sorted(woken_hist.items()))
    print(f"{handoff:13} workers={workers} conns={conns}  workers woken per "
          f"connection [{hist}]  switches per connection: serving worker "
          f"{serving_sw / conns:.2f}, other workers {others_sw / conns:.2f}, "
          f"parent {parent_sw / conns:.2f}")


def balance(handoff, workers, conns):
    srv = Server(handoff, workers, verbose=True)
    pids = srv.workers()
    ours = {one_echo(srv.addr) for _ in range(conns)}
    log = srv.stop()
    served = {p: 0 for p in pids}
    # Only our clients' lines: a stray connection from another program
    # that happens to try this port is not counted.
    for m in re.finditer(r"^worker (\d+): (\S+): connected$", log, re.M):
        if m.group(2) in ours:
            served[int(m.group(1))] = served.get(int(m.group(1)), 0) + 1
    counts = sorted(served.values(), reverse=True)
    total = sum(counts)
    print(f"{handoff:13} workers={workers} conns={conns}  served per worker "
          f"(most first) {counts}  total {total}  max/mean "
          f"{max(counts) / (total / len(counts)):.2f}")


def busy(handoff, workers, held, probes, patience):
    srv = Server(handoff, workers)
    holders = []
    for _ in range(held):
        h = socket.create_connection(srv.addr, timeout=2)
        h.sendall(b"h")
        try:
            echoed = h.recv(1) == b"h"
        except socket.timeout:
            echoed = False
        if not echoed:
            # reuseport: the hash put this holder behind another one.
            srv.stop()
            sys.exit(f"{handoff}: holder {len(holders)} got no echo; run again")
        holders.append(h)
    waited = 0
    lat = []
    for _ in range(probes):
        s = socket.create_connection(srv.addr, timeout=5)
        t0 = time.monotonic()
        s.sendall(b"p")
        s.settimeout(patience)
        try:
            if s.recv(1) == b"p":
                lat.append(time.monotonic() - t0)
            else:
                waited += 1
        except socket.timeout:
            waited += 1
        s.close()
    for h in holders:
        h.close()
    srv.stop()
    lat.sort()

    def pct(q):
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1e6 if lat else float("nan")
    served = (f"served ones p50 {pct(0.5):.0f} us, p99 {pct(0.99):.0f} us, "
              f"max {pct(1.0):.0f} us" if lat else "none served")
    print(f"{handoff:13} workers={workers} held={held}, {probes} fresh clients: "
          f"{waited} waited > {patience * 1000:.0f} ms; {served}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["wakeups", "balance", "busy"])
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--conns", type=int, default=200)
    ap.add_argument("--probes", type=int, default=100)
    ap.add_argument("--held", type=int, default=1)
    ap.add_argument("--patience", type=float, default=0.5)
    ap.add_argument("--handoff", choices=HANDOFFS)
    a = ap.parse_args()
    for h in [a.handoff] if a.handoff else HANDOFFS:
        if a.what == "wakeups":
            wakeups(h, a.workers, a.conns)
        elif a.what == "balance":
            balance(h, a.workers, a.conns)
        else:
            busy(h, a.workers, a.held, a.probes, a.patience)


if __name__ == "__main__":
    main()
