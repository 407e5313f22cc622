#!/usr/bin/env bash
# Where echo-io-uring's memory goes at many connections, in both modes:
# the server's peak and final resident memory (VmHWM, VmRSS, RssAnon from
# /proc/PID/status, read just before SIGINT) and, in the default mode, how
# far the pool of provided buffers grew (its "grown to N buffers" log
# lines, printed with --verbose).
#
#   bash scripts/measure/io-uring-memory.sh [CONNS] [RATE] [SECS]
#   bash scripts/measure/io-uring-memory.sh 10000 20000 10     # the default
#
# The load is the shared run's c10k shape (`echo-bench load --conns C
# --rate R --duration SECS`, 64-byte messages); this script does not time
# anything, it explains the memory figure that run reports. The server is
# pinned to CPU 0 and the load to CPU 1. BIN_DIR names the folder of the
# binaries (default target/release).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${BIN_DIR:-target/release}
conns=${1:-10000}
rate=${2:-20000}
secs=${3:-10}
ulimit -n 30000
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs, kernel $(uname -r)"
echo "# $conns connections, open loop at $rate msg/s for $secs s"
for flags in "" "--single-shot"; do
  # shellcheck disable=SC2086 # flags: zero or one word
  taskset -c 0 "$bin/echo-io-uring" --addr 127.0.0.1:0 --max-conns $((conns + 100)) \
    --verbose $flags >"$work/ready" 2>"$work/log" &
  server=$!
  addr=
  for _ in $(seq 100); do
    addr=$(sed -n 's/^listening on //p' "$work/ready")
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "no readiness line" >&2; kill "$server"; exit 1; }
  # Memory with the connections open and idle would need a hook inside
  # the load; the peak (VmHWM) after the run covers the busiest moment.
  taskset -c 1 timeout 300 "$bin/echo-bench" load --addr "$addr" --conns "$conns" \
    --size 64 --rate "$rate" --duration "$secs" | grep -E 'latency|p99|msgs' || true
  mem=$(grep -E '^(VmHWM|VmRSS|RssAnon):' "/proc/$server/status" | tr -s ' \t' ' ' | tr '\n' ';')
  kill -INT "$server"
  timeout 60 tail --pid="$server" -f /dev/null || true
  wait "$server" || true
  pool=$(grep -c 'buffer pool empty' "$work/log" || true)
  last=$(grep 'buffer pool empty' "$work/log" | tail -n 1 || true)
  echo "io-uring ${flags:-(multishot)}: $mem pool growths: $pool ${last:+(last: $last)}"
done
