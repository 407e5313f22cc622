#!/usr/bin/env python3
"""What one more watched descriptor costs echo-poll on every wake-up: the
server's CPU per echo, split into user and system time, for one busy client
beside N idle connections, with the busy client's entry placed first or last
in the server's pollfd array.

    python3 scripts/measure/poll-cost-per-call.py [--model poll] [--idle 0,1000,10000]
        [--placement last|first] [--echoes 20000] [--repeat 3] [--perf FILE]

For each N and repetition: start target/release/echo-<model> on port 0 with
--max-conns 20000, pinned to CPU 0 (this script pins itself to CPU 1), open
the busy connection and N idle ones in the order --placement asks for, wait
until the server holds all of them (its descriptor count, bounded), then run
--echoes ping-pong echoes of 64 bytes on the busy connection, one at a time.
The server's CPU over those echoes is read from /proc/<pid>/schedstat (run
time in ns, user and system together) and /proc/<pid>/stat (utime and stime,
in clock ticks: the split, coarser). One echo at a time means the server's
loop sleeps in poll(2) between echoes, so each echo is one poll call that
sleeps and wakes, plus a recvfrom and a sendto.

Placement: the server appends each accepted client to its array and walks
the array backwards from the end, stopping once it has found as many ready
entries as poll reported. "last" (the busy client connects after the idle
ones, as `echo-bench load --idle` does) lets that walk stop at once; "first"
makes it pass every idle entry. The kernel walks the whole array either way.

No strace here: tracing stops the server at every system call and would be
measured with it. Build first with `cargo build --release --workspace
--bins`, or set ECHO_BIN_DIR to a folder holding the release binaries. Run
with `ulimit -n 20000`.
"""

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
BIN_DIR = os.environ.get("ECHO_BIN_DIR", os.path.join(ROOT, "target", "release"))
TICK = os.sysconf("SC_CLK_TCK")
MESSAGE = bytes(range(64))


def server_cpu(pid):
    """(run ns, user s, system s) of every thread of `pid` so far."""
    run_ns = 0
    # /proc/<pid>/schedstat is the main thread's alone; sum the threads.
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            run_ns += int(f.read().split()[0])
    with open(f"/proc/{pid}/stat") as f:
        after_comm = f.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of stat(5), counted from 1; after_comm starts at 3.
    return run_ns, int(after_comm[11]) / TICK, int(after_comm[12]) / TICK


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_for_fds(pid, want, what, limit_s=60.0, exact=False):
    """Bounded wait until the server holds `want` descriptors (at least, or
    exactly)."""
    deadline = time.monotonic() + limit_s
    while (fd_count(pid) != want) if exact else (fd_count(pid) < want):
        if time.monotonic() > deadline:
            sys.exit(f"{what}: server holds {fd_count(pid)} descriptors, expected {want}")
        time.sleep(0.02)


def echo_once(sock):
    sock.sendall(MESSAGE)
    got = b""
    while len(got) < len(MESSAGE):
        chunk = sock.recv(len(MESSAGE) - len(got))
        if not chunk:
            sys.exit("the server closed the busy connection")
        got += chunk
    if got != MESSAGE:
        sys.exit("wrong echo")


def one_run(model, idle, placement, echoes, perf=None):
    binary = os.path.join(BIN_DIR, f"echo-{model}")
    server = subprocess.Popen(
        [binary, "--addr", "127.0.0.1:0", "--max-conns", "20000"],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {0}),
    )
    try:
        line = server.stdout.readline().strip()
        if not line.startswith("listening on "):
            sys.exit(f"no readiness line from {binary}: {line!r}")
        host, port = line[len("listening on "):].rsplit(":", 1)
        addr = (host, int(port))
        # The loop opens its spare descriptor after the readiness line:
        # one echo on a throwaway connection makes sure it is running.
        with socket.create_connection(addr, timeout=5) as probe:
            echo_once(probe)
            baseline = fd_count(server.pid) - 1
        wait_for_fds(server.pid, baseline, "closing the probe", exact=True)

        def connect():
            s = socket.create_connection(addr, timeout=10)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return s

        busy = None
        if placement == "first":
            busy = connect()
            echo_once(busy)  # accepted, so it takes the first client slot
        idle_socks = [connect() for _ in range(idle)]
        wait_for_fds(server.pid, baseline + idle + (busy is not None), "idle connections")
        if busy is None:
            busy = connect()
            echo_once(busy)
        busy.settimeout(10)
        # A few echoes first, so that the measured ones find a warm loop.
        for _ in range(100):
            echo_once(busy)

        recorder = None
        if perf:
            # Sampled call stacks of the server during the echoes only, user
            # and kernel; its figures below are then not clean CPU times.
            recorder = subprocess.Popen(
                ["perf", "record", "-q", "-g", "-o", perf, "-p", str(server.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1)
        before = server_cpu(server.pid)
        t0 = time.monotonic()
        for _ in range(echoes):
            echo_once(busy)
        wall = time.monotonic() - t0
        after = server_cpu(server.pid)
        if recorder:
            recorder.send_signal(2)
            recorder.wait(timeout=60)

        busy.close()
        for s in idle_socks:
            s.close()
        return {
            "run_us": (after[0] - before[0]) / 1e3 / echoes,
            "user_us": (after[1] - before[1]) * 1e6 / echoes,
            "sys_us": (after[2] - before[2]) * 1e6 / echoes,
            "wall_us": wall * 1e6 / echoes,
        }
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="poll")
    p.add_argument("--idle", default="0,1000,10000")
    p.add_argument("--placement", choices=("last", "first"), default="last")
    p.add_argument("--echoes", type=int, default=20000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--perf", metavar="FILE",
                   help="one run at the last --idle value under `perf record -g`, into FILE")
    a = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.sched_setaffinity(0, {1})

    if a.perf:
        idle = int(a.idle.split(",")[-1])
        one_run(a.model, idle, a.placement, a.echoes, perf=a.perf)
        print(f"perf data in {a.perf}: perf report -i {a.perf} --no-children --sort sym")
        return

    print(f"echo-{a.model}, busy client {a.placement}, {a.echoes} echoes of 64 B one at a time, "
          f"{a.repeat} repetitions; server on CPU 0, client on CPU 1")
    print("idle    server CPU µs/echo (each rep)    mean   user µs/echo  sys µs/echo  wall µs/echo")
    base = None
    for idle in [int(x) for x in a.idle.split(",")]:
        runs = [one_run(a.model, idle, a.placement, a.echoes) for _ in range(a.repeat)]
        cpu = [r["run_us"] for r in runs]
        mean = statistics.mean(cpu)
        user = statistics.mean(r["user_us"] for r in runs)
        sys_ = statistics.mean(r["sys_us"] for r in runs)
        wall = statistics.mean(r["wall_us"] for r in runs)
        each = " / ".join(f"{c:.1f}" for c in cpu)
        extra = ""
        if base is None:
            base = (idle, mean)
        elif idle > base[0]:
            ns = (mean - base[1]) * 1e3 / (idle - base[0])
            extra = f"   +{ns:.0f} ns per idle entry per echo over idle={base[0]}"
        print(f"{idle:>6}  {each:<32} {mean:7.1f}  {user:11.1f}  {sys_:11.1f}  {wall:11.1f}{extra}")


if __name__ == "__main__":
    main()
