#!/usr/bin/env bash
# Where echo-io-uring's memory goes, in both modes: the server's peak and
# final resident memory (VmHWM, VmRSS, RssAnon from /proc/PID/status, read
# just before SIGINT) and, in the default mode, how far the pool of
# provided buffers grew (its "grown to N buffers" lines, printed with
# --verbose).
#
#   bash scripts/measure/io-uring-memory.sh
#
# Four runs, each on a fresh server pinned to CPU 0, the load on CPU 1:
#   1. default mode, the shared run's c10k shape: 10,000 connections, open
#      loop at 20,000 msg/s for 10 s, 64-byte messages;
#   2. --single-shot, the same;
#   3. --single-shot again, with glibc told to mmap every allocation of
#      16 KiB or more (GLIBC_TUNABLES=glibc.malloc.mmap_threshold=16384):
#      whether the per-connection buffers' memory comes from calloc
#      clearing heap memory rather than from data landing in them;
#   4. default mode, the shared run's conns-1000 shape: 1,000 connections,
#      closed loop, 50,000 messages: how far the pool grows when every
#      connection has a message in flight at once.
# This script times nothing; it explains the memory figures the shared run
# reports. BIN_DIR names the folder of the binaries (default target/release).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${BIN_DIR:-target/release}
ulimit -n 20000
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# measure LABEL TUNABLES FLAGS CONNS LOAD-ARGS...
measure() {
  local label=$1 tunables=$2 flags=$3 conns=$4
  shift 4
  # shellcheck disable=SC2086 # flags: zero or one word
  env ${tunables:+GLIBC_TUNABLES=$tunables} taskset -c 0 "$bin/echo-io-uring" \
    --addr 127.0.0.1:0 --max-conns $((conns + 100)) --verbose $flags \
    >"$work/ready" 2>"$work/log" &
  local server=$! addr=
  for _ in $(seq 100); do
    addr=$(sed -n 's/^listening on //p' "$work/ready" 2>/dev/null)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "no readiness line" >&2; kill "$server"; exit 1; }
  taskset -c 1 timeout 300 "$bin/echo-bench" load --addr "$addr" --conns "$conns" \
    --size 64 "$@" >"$work/load" || echo "(load failed: $(tail -n 1 "$work/load"))"
  local mem
  mem=$(grep -E '^(VmHWM|VmRSS|RssAnon):' "/proc/$server/status" | tr -s ' \t' ' ' | tr '\n' ';')
  kill -INT "$server"
  timeout 60 tail --pid="$server" -f /dev/null || true
  wait "$server" || true
  local growths last
  growths=$(grep -c 'buffer pool empty' "$work/log" || true)
  last=$(grep 'buffer pool empty' "$work/log" | tail -n 1 || true)
  echo "$label: $mem pool growths: $growths${last:+ (last: $last)}"
}

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs, kernel $(uname -r)"
c10k=(--rate 20000 --duration 10)
measure "default, 10000 conns, 20000 msg/s" "" "" 10000 "${c10k[@]}"
measure "--single-shot, 10000 conns, 20000 msg/s" "" "--single-shot" 10000 "${c10k[@]}"
measure "--single-shot, mmap_threshold=16384, 10000 conns, 20000 msg/s" \
  glibc.malloc.mmap_threshold=16384 "--single-shot" 10000 "${c10k[@]}"
measure "default, 1000 conns, closed loop, 50000 msgs" "" "" 1000 --messages 50000
