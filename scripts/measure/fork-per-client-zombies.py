#!/usr/bin/env python3
"""Zombie children of a fork-per-client server during and after a churn of
short connections.

    python3 scripts/measure/fork-per-client-zombies.py [--bin PATH] [--conns 2000] [--repeat 3]

For each repetition: start the server on port 0; run the conformance
suite's `churn` case against it (`echo-bench check --addr A --pid P --case
churn`) unless --no-suite, then `--conns` short connections from this
script, one after another (connect, send 16 bytes, read them back, close).
Meanwhile a sampler thread scans /proc every 5 ms for the server's
children, counting those in state Z (exited, not yet waited for) and those
alive. After the last client, it waits up to 5 s for the zombie count to
reach 0 and reports how long that took.

Children are the processes whose ppid (field 4 of /proc/<pid>/stat) is the
server: this kernel has no /proc/<pid>/task/<tid>/children. A sample can
miss a zombie that lives less than 5 ms, so "most seen at once" is a lower
bound; the count after the run is exact.

--bin takes any server binary that follows the contract, for instance the
`fork-reaper` exercise's starter (target/debug/ex-fork-reaper after
`cargo build -p ex-fork-reaper`), to see what no reaper does.
"""

import argparse
import os
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DEFAULT_BIN = os.path.join(ROOT, "target", "release", "echo-fork-per-client")
BENCH = os.path.join(ROOT, "target", "release", "echo-bench")


def children(pid):
    """(live, zombies) among the processes whose parent is `pid`."""
    live = zombies = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                after_comm = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone while we scanned
        if int(after_comm[1]) == pid:
            if after_comm[0] == "Z":
                zombies += 1
            else:
                live += 1
    return live, zombies


class Sampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.stop, self.most, self.samples = pid, threading.Event(), 0, 0

    def run(self):
        while not self.stop.is_set():
            self.most = max(self.most, children(self.pid)[1])
            self.samples += 1
            time.sleep(0.005)


def short_clients(addr, n):
    host, port = addr.rsplit(":", 1)
    for i in range(n):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            msg = b"%015d\n" % i
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                chunk = s.recv(len(msg) - len(got))
                if not chunk:
                    sys.exit(f"client {i}: connection closed before the echo")
                got += chunk
            if got != msg:
                sys.exit(f"client {i}: echoed {got!r}, sent {msg!r}")


def one_run(binary, conns, suite):
    server = subprocess.Popen([binary, "--addr", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline().strip()
        if not line.startswith("listening on "):
            sys.exit(f"unexpected first line from the server: {line!r}")
        addr = line.removeprefix("listening on ")
        sampler = Sampler(server.pid)
        sampler.start()
        verdict = "not run"
        if suite:
            check = subprocess.run(
                [BENCH, "check", "--addr", addr, "--pid", str(server.pid), "--suite", "cases",
                 "--case", "churn"],
                capture_output=True, text=True, timeout=120,
            )
            verdict = next((l for l in check.stdout.splitlines() if "churn" in l), check.stdout)
        short_clients(addr, conns)
        sampler.stop.set()
        sampler.join()
        end = time.monotonic()
        while True:
            live, zombies = children(server.pid)
            waited = time.monotonic() - end
            if zombies == 0 or waited > 5:
                break
            time.sleep(0.01)
        return verdict, sampler.most, sampler.samples, live, zombies, waited
    finally:
        server.terminate()
        server.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=DEFAULT_BIN)
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-suite", action="store_true", help="skip the churn case")
    args = ap.parse_args()
    print(f"{os.path.basename(args.bin)}: churn case, then {args.conns} short connections")
    for run in range(1, args.repeat + 1):
        verdict, most, samples, live, zombies, waited = one_run(args.bin, args.conns, not args.no_suite)
        print(f"run {run}: {verdict.strip()}")
        print(f"  most zombies seen at once: {most} (in {samples} samples); "
              f"after the last client: {zombies} zombies, {live} live children "
              f"({waited * 1000:.0f} ms after it)")


if __name__ == "__main__":
    main()
