#!/usr/bin/env bash
# The system calls of a select server under a short load, counted by
# strace: one busy connection carrying MESSAGES echoes of 64 bytes, with
# IDLE silent connections held open beside it (echo-bench's --idle), so
# that what every select call pays for the idle ones shows in its
# usecs/call.
#
#   bash scripts/measure/select-strace.sh [IDLE] [MESSAGES]
#   BIN=twins/select_echo.py bash scripts/measure/select-strace.sh 0
#
# BIN is the server (default target/release/echo-select; a .py path runs
# under python3), BENCH the harness (default target/release/echo-bench).
# Needs strace and a release build. Prints strace's -c table (-f: every
# thread), then the server's descriptor count.
set -euo pipefail
cd "$(dirname "$0")/../.."
idle=${1:-0}
messages=${2:-20000}
bin=${BIN:-target/release/echo-select}
bench=${BENCH:-target/release/echo-bench}
ulimit -n 20000
out=$(mktemp)
ready=$(mktemp)
trap 'rm -f "$out" "$ready"' EXIT

cmd=("$bin")
[[ $bin == *.py ]] && cmd=(python3 "$bin")
strace -f -c -o "$out" "${cmd[@]}" --addr 127.0.0.1:0 >"$ready" &
tracer=$!
# The readiness line carries the port; wait for it, bounded.
for _ in $(seq 100); do
  grep -q '^listening on' "$ready" && break
  sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$ready")
[ -n "$addr" ] || { echo "no readiness line" >&2; kill "$tracer"; exit 1; }

timeout 300 "$bench" load --addr "$addr" --conns 1 --idle "$idle" --size 64 \
  --messages "$messages" >&2
# SIGTERM to the server (strace's child), not to strace: the server drains
# and exits 0, and strace then writes its table.
server=$(pgrep -P "$tracer" | head -n 1)
kill -TERM "$server"
timeout 30 tail --pid="$tracer" -f /dev/null || true
wait "$tracer" || true
echo "# $(date -u '+%F %T') UTC, ${cmd[*]}, 1 busy + $idle idle connections, $messages echoes of 64 B"
cat "$out"
