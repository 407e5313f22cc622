#!/usr/bin/env bash
# What echo-fork-per-client asks of the kernel per connection, under strace.
#
#   bash scripts/measure/fork-per-client-strace.sh [CONNS] [MESSAGES]   (default 50 2000)
#
# Two runs of the same load (`echo-bench load --conns CONNS --messages
# MESSAGES`, 64 B messages), the server under `strace -f` each time, ended
# with SIGINT:
#   1. `strace -f -c`: the summary table of every system call.
#   2. `strace -f -e trace=process`: each fork (`clone` with SIGCHLD),
#      thread (`clone3`), `wait4` and `exit_group` one by one, so that the
#      results can be counted; `strace -c` leaves out `exit_group`, which
#      never returns. Calls split by strace into "unfinished" and "resumed"
#      are counted once, by their result.
# Build first: cargo build --release --workspace --bins.
set -euo pipefail
cd "$(dirname "$0")/../.."
ulimit -n 20000

conns=${1:-50}
messages=${2:-2000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One traced run: strace options in "$@", output to $tmp/trace.
traced_run() {
  strace -f -o "$tmp/trace" "$@" target/release/echo-fork-per-client --addr 127.0.0.1:0 \
    >"$tmp/ready" &
  local tracer=$! addr="" server
  for _ in $(seq 100); do
    addr=$(sed -n 's/^listening on //p' "$tmp/ready")
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "the server did not start" >&2; exit 1; }
  target/release/echo-bench load --addr "$addr" --conns "$conns" --size 64 \
    --messages "$messages" | grep -E '^(messages|errors)'
  server=$(pgrep -P "$tracer")
  kill -INT "$server"
  wait "$tracer"
}

echo "== strace -f -c, $conns connections, $messages messages"
traced_run -c
cat "$tmp/trace"

echo
echo "== strace -f -e trace=process, same load"
traced_run -e trace=process
python3 - "$tmp/trace" "$conns" <<'PY'
import re, sys
from collections import Counter

path, conns = sys.argv[1], int(sys.argv[2])
results = Counter()
for line in open(path):
    # "<pid> name(args) = result", or "<pid> <... name resumed>...) = result"
    m = re.match(r"\d+ (?:<\.\.\. (\w+) resumed>|(\w+)\()", line)
    if not m or "<unfinished ...>" in line:
        continue
    name = m.group(1) or m.group(2)
    result = line.rsplit("=", 1)[1].strip() if "=" in line else "?"
    if name == "wait4":
        kind = ("reaped a child" if re.match(r"[1-9]", result)
                else "0: none exited yet" if result.startswith("0")
                else "ECHILD: no child left" if "ECHILD" in result else result)
    elif name in ("clone", "clone3"):
        kind = ("ok" if re.match(r"[1-9]", result)
                else "ERESTARTNOINTR: interrupted by a signal, restarted"
                if "ERESTARTNOINTR" in result else result)
    elif name == "exit_group":
        kind = "called"
    else:
        kind = result.split()[0]
    results[(name, kind)] += 1
print(f"{'call':<12} {'result':<52} {'count':>6} {'per connection':>15}")
for (name, kind), n in sorted(results.items()):
    print(f"{name:<12} {kind:<52} {n:>6} {n / conns:>15.2f}")
PY
