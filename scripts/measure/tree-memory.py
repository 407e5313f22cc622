#!/usr/bin/env python3
"""Memory of a server's whole process tree while C connections are open:
the sum of the proportional set size (PSS) of every process in it, beside
the sum of their RSS, for several servers and connection counts.

    python3 scripts/measure/tree-memory.py [--conns 1,50,1000] [--repeat 3] [SERVER ...]

SERVER is a model id (`fork-per-client`, run as target/release/echo-<id>)
or `py-forking` / `py-threading` (twins/socketserver_echo.py). Default: the
four blocking models, epoll and the two twins.

Why not `echo-bench run`: its window closes when the last connection has
closed, so a figure read at the window's edges never sees a fork-per-client
tree at its largest (its cgroup's charge peak does, and `run` reports that;
PSS has no peak counter). Here every connection stays open for the whole
reading: `echo-bench load` in open loop, one message per connection per
second, for `--seconds`; after half of that (every connection has sent a
message or more, and every one the server serves has been echoed) the tree
is read: parent and descendants through the parent pid in /proc/*/stat,
then `Pss` and `Rss` from each /proc/<pid>/smaps_rollup. The load is then
stopped: with a server that serves fewer clients than are connected
(prefork, a pool, iterative), the others are still waiting, which is what
such a server looks like under that load.

RSS counts a page once per process that maps it, so a tree of C forked
children that share their parent's pages is counted C times over; PSS
divides each page by the number of processes mapping it, and the sum is
what the tree costs. Neither counts kernel memory (page tables, socket
buffers, kernel stacks); the cgroup charge in `echo-bench run` does.
Build first (`cargo build --release --workspace --bins`) and raise the
open-files limit (`ulimit -n 20000`).
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BENCH = os.path.join(ROOT, "target", "release", "echo-bench")
TWIN = os.path.join(ROOT, "twins", "socketserver_echo.py")
DEFAULT = ["fork-per-client", "prefork", "thread-per-client", "thread-pool", "epoll",
           "py-forking", "py-threading"]


def command(server):
    if server.startswith("py-"):
        return [sys.executable, TWIN, "--mode", server[3:]]
    return [os.path.join(ROOT, "target", "release", f"echo-{server}")]


def tree(root):
    """`root` and its descendants, from the parent pids in /proc/*/stat."""
    parent = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone while we scanned
        parent[int(entry)] = int(fields[1])
    members, frontier = [root], [root]
    while frontier:
        frontier = [p for p, pp in parent.items() if pp in frontier]
        members.extend(frontier)
    return members


def rollup(pid):
    """(Pss, Rss, threads) of one process; KiB. Zeros if it is gone."""
    out = {"Pss": 0, "Rss": 0}
    threads = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in out:
                    out[key] = int(rest.split()[0])
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    threads = int(line.split()[1])
    except OSError:
        pass
    return out["Pss"], out["Rss"], threads


def one_run(server, conns, seconds):
    proc = subprocess.Popen(command(server) + ["--addr", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    load = None
    try:
        line = proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            sys.exit(f"{server}: unexpected first line {line!r}")
        addr = line.removeprefix("listening on ")
        load = subprocess.Popen(
            [BENCH, "load", "--addr", addr, "--conns", str(conns), "--size", "64",
             "--rate", str(conns), "--duration", str(seconds)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(seconds / 2)
        if load.poll() is not None:
            sys.exit(f"{server}: the load ended early (status {load.returncode})")
        members = tree(proc.pid)
        figures = [rollup(p) for p in members]
        return (sum(f[0] for f in figures), sum(f[1] for f in figures),
                len(members), sum(f[2] for f in figures))
    finally:
        if load is not None and load.poll() is None:
            load.kill()
            load.wait()
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conns", default="1,50,1000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("servers", nargs="*", default=DEFAULT)
    args = ap.parse_args()
    counts = [int(c) for c in args.conns.split(",")]
    print("server | conns | PSS of the tree, MiB (runs) | RSS summed, MiB (median) "
          "| processes | threads")
    print("---|---:|---|---:|---:|---:")
    for server in args.servers:
        for conns in counts:
            runs = [one_run(server, conns, args.seconds) for _ in range(args.repeat)]
            pss = " / ".join(f"{r[0] / 1024:.1f}" for r in runs)
            rss = statistics.median(r[1] for r in runs) / 1024
            procs = max(r[2] for r in runs)
            threads = max(r[3] for r in runs)
            print(f"{server} | {conns} | {pss} | {rss:.1f} | {procs} | {threads}", flush=True)


if __name__ == "__main__":
    main()
