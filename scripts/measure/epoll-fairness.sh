#!/usr/bin/env bash
# A bulk client beside a small one, level- against edge-triggered: what a
# busy neighbour costs a client that sends 64 bytes at a time. One server
# per run (not pinned); a bulk load of 1 MiB messages on one connection
# for 6 s and, starting 1 s into it, a small load of 64 B messages on one
# connection for 4 s. Prints each load's throughput and latency lines.
#
#   bash scripts/measure/epoll-fairness.sh [REPEAT]
#
# BIN_DIR names the folder of echo-epoll and echo-bench (default
# target/release). Level-triggered reads 64 KiB from the bulk client per
# wake-up; edge-triggered up to 16 reads (1 MiB) per turn.
set -euo pipefail
cd "$(dirname "$0")/../.."
repeat=${1:-3}
bin=${BIN_DIR:-target/release}
tmp=$(mktemp -d)
server=
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$tmp"' EXIT

for rep in $(seq "$repeat"); do
  for mode in level edge; do
    flags=()
    [ "$mode" = edge ] && flags=(--edge-triggered)
    # A new file per server: reading the last run's readiness line before
    # this server has truncated it would give the old port.
    ready="$tmp/ready-$rep-$mode"
    "$bin/echo-epoll" --addr 127.0.0.1:0 "${flags[@]}" >"$ready" &
    server=$!
    addr=
    for _ in $(seq 100); do
      addr=$(sed -n 's/^listening on //p' "$ready" 2>/dev/null)
      [ -n "$addr" ] && break
      sleep 0.1
    done
    [ -n "$addr" ] || { echo "no readiness line" >&2; kill "$server"; exit 1; }
    timeout 60 "$bin/echo-bench" load --addr "$addr" --conns 1 --size 1048576 \
      --duration 6 >"$tmp/bulk" 2>&1 &
    bulk=$!
    sleep 1
    timeout 60 "$bin/echo-bench" load --addr "$addr" --conns 1 --size 64 \
      --duration 4 >"$tmp/small" 2>&1
    wait "$bulk" || true
    kill -INT "$server"
    wait "$server" || true
    server=
    # Each load says "errors none" only if every byte came back.
    for f in bulk small; do
      grep -q '^errors *none' "$tmp/$f" || { echo "$mode, $f load failed:" >&2; cat "$tmp/$f" >&2; exit 1; }
    done
    echo "rep $rep, $mode-triggered:"
    grep -E 'throughput|latency' "$tmp/bulk" | sed 's/^/  bulk  /'
    grep -E 'throughput|latency' "$tmp/small" | sed 's/^/  small /'
  done
done
