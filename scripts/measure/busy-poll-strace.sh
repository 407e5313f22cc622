#!/usr/bin/env bash
# What echo-busy-poll asks of the kernel, counted by `strace -f -c`: how
# many accept4 and recvfrom calls come back EAGAIN for each echo, and how
# many pauses (clock_nanosleep) it takes, with the default pause and with
# none.
#
#   bash scripts/measure/busy-poll-strace.sh
#
# Four runs, each on a fresh server under `strace -f -c`, ended with
# SIGINT as soon as the load is done:
#   1. the house load of the other chapters: one client, 20,000 echoes of
#      64 B, closed loop, default pause (1000 µs);
#   2. the same with --idle-sleep-us 0, a pure spin;
#   3. one client at 100 msgs/s for 3 s (open loop), default pause;
#   4. the same with --idle-sleep-us 0.
# strace stops the server at every system call, which makes each call
# many times slower: the spinning loops of runs 2 and 4 sweep far less
# often than they would untraced, so their counts are a floor. The ratios per echo
# are what to read. BIN is the directory holding echo-bench and
# echo-busy-poll (default target/release).
set -euo pipefail
cd "$(dirname "$0")/../.."
ulimit -n 20000
bin=${BIN:-target/release}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One traced run: $1 = the server's --idle-sleep-us, the rest = load flags.
traced_run() {
  local pause=$1
  shift
  : >"$tmp/ready"
  strace -f -c -o "$tmp/trace" "$bin/echo-busy-poll" --addr 127.0.0.1:0 \
    --idle-sleep-us "$pause" >"$tmp/ready" &
  local tracer=$! addr="" server
  for _ in $(seq 100); do
    addr=$(sed -n 's/^listening on //p' "$tmp/ready")
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "the server did not start" >&2; exit 1; }
  echo "== strace -f -c echo-busy-poll --idle-sleep-us $pause; echo-bench load $*"
  timeout 120 "$bin/echo-bench" load --addr "$addr" --size 64 "$@" \
    | grep -E '^(messages|elapsed|latency|errors)'
  server=$(pgrep -P "$tracer")
  kill -INT "$server"
  wait "$tracer"
  cat "$tmp/trace"
  echo
}

date -u '+# %Y-%m-%d %H:%M:%S UTC'
lscpu | grep 'Model name'
echo "cores: $(nproc)"
traced_run 1000 --conns 1 --messages 20000
traced_run 0 --conns 1 --messages 20000
traced_run 1000 --conns 1 --rate 100 --duration 3
traced_run 0 --conns 1 --rate 100 --duration 3
