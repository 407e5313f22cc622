#!/usr/bin/env python3
"""Memory of echo-fork-per-client's process tree while C connections are open:
the sum of every process's RSS against the sum of its PSS.

    python3 scripts/measure/fork-per-client-memory.py [--conns 50] [--repeat 3]

For each repetition: start target/release/echo-fork-per-client on port 0,
hold C connections open with `echo-bench load` (open loop, a few messages a
second, so every connection stays open for the whole run), wait until the
server has C children, then read /proc/<pid>/smaps_rollup of the parent and
of each child. RSS counts every resident page a process maps, so a page
shared by the C+1 processes of the tree (the binary's text, libc, the pages
the children inherited from the parent and never wrote) is counted C+1 times
in a sum of RSS. PSS divides each page by the number of processes mapping
it, so a sum of PSS counts it once: it is what the tree costs the machine.

Children are found by scanning /proc/*/stat for a ppid equal to the server's
(this kernel has no /proc/<pid>/task/<tid>/children). Build first with
`cargo build --release --workspace --bins`; run with `ulimit -n 20000`.
"""

import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SERVER = os.path.join(ROOT, "target", "release", "echo-fork-per-client")
BENCH = os.path.join(ROOT, "target", "release", "echo-bench")
FIELDS = ("Rss", "Pss", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty")


def children_of(pid):
    """Pids whose parent is `pid` (field 4 of /proc/<p>/stat, after the comm)."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                after_comm = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone while we scanned
        if int(after_comm[1]) == pid:
            kids.append(int(entry))
    return kids


def rollup(pid):
    """The smaps_rollup fields of one process, in KiB."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in FIELDS:
                out[key] = int(rest.split()[0])
    return out


def one_run(conns, seconds):
    server = subprocess.Popen(
        [SERVER, "--addr", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True
    )
    try:
        line = server.stdout.readline().strip()
        if not line.startswith("listening on "):
            sys.exit(f"unexpected first line from the server: {line!r}")
        addr = line.removeprefix("listening on ")
        load = subprocess.Popen(
            [BENCH, "load", "--addr", addr, "--conns", str(conns), "--size", "64",
             "--rate", str(conns), "--duration", str(seconds)],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + seconds
        kids = []
        while time.monotonic() < deadline:
            kids = children_of(server.pid)
            if len(kids) >= conns:
                break
            time.sleep(0.05)
        if len(kids) < conns:
            sys.exit(f"only {len(kids)} children after {seconds} s")
        time.sleep(0.5)  # a few echoes through every child first
        parent = rollup(server.pid)
        per_child = [rollup(k) for k in kids]
        if load.wait(timeout=seconds + 30) != 0:
            sys.exit("echo-bench load failed: the run does not count")
        return parent, per_child
    finally:
        server.terminate()
        server.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=6, help="length of each load run")
    args = ap.parse_args()
    print(f"echo-fork-per-client, {args.conns} connections held open; KiB")
    print("run | parent RSS | parent PSS | child RSS (mean) | child PSS (mean) "
          "| child private (mean) | sum of RSS | sum of PSS | RSS/PSS")
    for run in range(1, args.repeat + 1):
        parent, kids = one_run(args.conns, args.seconds)
        n = len(kids)
        rss = parent["Rss"] + sum(k["Rss"] for k in kids)
        pss = parent["Pss"] + sum(k["Pss"] for k in kids)
        private = sum(k["Private_Clean"] + k["Private_Dirty"] for k in kids)
        print(f"{run} | {parent['Rss']} | {parent['Pss']} | {sum(k['Rss'] for k in kids) / n:.0f} "
              f"| {sum(k['Pss'] for k in kids) / n:.0f} | {private / n:.0f} "
              f"| {rss} | {pss} | {rss / pss:.1f}")


if __name__ == "__main__":
    main()
