#!/usr/bin/env bash
# The system calls of echo-poll for one busy client beside IDLE silent
# connections, counted by strace: 20,000 echoes of 64 bytes on one
# connection (`echo-bench load --conns 1 --idle IDLE`), with the idle ones
# opened before the clock and closed after it.
#
#   bash scripts/measure/poll-syscall-cost.sh [IDLE] [summary|calls] [MESSAGES]
#
# summary (the default): strace's -c table over the whole run, whose
#   seconds are system CPU time (strace's default; -w would give wall time,
#   which for poll(2) is mostly sleep).
# calls: every poll(2) call with its duration (-T, wall time) into a file,
#   then how many entries each call was handed, and three calls from the
#   middle of the run with their arrays cut short (head and tail of each
#   line: strace prints every entry).
#
# Tracing stops the server twice per system call, so the per-call figures
# are inflated alike for every call; compare them with each other, not with
# untraced runs (scripts/measure/poll-cost-per-call.py measures without
# strace). Needs strace and a release build (cargo build --release
# --workspace --bins), or ECHO_BIN_DIR set to a folder holding the release
# binaries. Raises the open-files limit itself.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${ECHO_BIN_DIR:-target/release}
idle=${1:-0}
mode=${2:-summary}
messages=${3:-20000}
case "$mode" in summary|calls) ;; *) echo "mode: summary or calls, not '$mode'" >&2; exit 2 ;; esac
ulimit -n 20000
out=$(mktemp)
ready=$(mktemp)
trap 'rm -f "$out" "$ready"' EXIT

if [ "$mode" = summary ]; then
  strace -f -c -o "$out" "$bin/echo-poll" --addr 127.0.0.1:0 --max-conns 20000 >"$ready" &
else
  strace -f -T -e trace=poll -o "$out" "$bin/echo-poll" --addr 127.0.0.1:0 --max-conns 20000 >"$ready" &
fi
tracer=$!
# The readiness line carries the port; wait for it, bounded.
for _ in $(seq 100); do
  grep -q '^listening on' "$ready" && break
  sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$ready")
[ -n "$addr" ] || { echo "no readiness line" >&2; kill "$tracer"; exit 1; }

timeout 300 "$bin/echo-bench" load --addr "$addr" --conns 1 --idle "$idle" --size 64 --messages "$messages" >&2
# SIGTERM to the server (strace's child), not to strace: the server drains
# and exits 0, and strace then writes its table.
server=$(pgrep -P "$tracer" -x echo-poll | head -n 1)
kill -TERM "$server"
timeout 60 tail --pid="$tracer" -f /dev/null || true
wait "$tracer" || true

if [ "$mode" = summary ]; then
  cat "$out"
else
  # Entries per call: the second argument of poll(2).
  echo "poll calls by number of entries handed in (nfds), over the whole run:"
  sed -n 's/.*poll(\[.*\], \([0-9]*\), -1).*/\1/p' "$out" | sort -n | uniq -c | sort -rn | head -5
  echo "three calls from the middle of the run:"
  total=$(grep -c 'poll(' "$out")
  grep 'poll(' "$out" | sed -n "$((total / 2)),$((total / 2 + 2))p" |
    sed -E 's/^(.{90}).*(.{130})$/\1 ... \2/'
fi
