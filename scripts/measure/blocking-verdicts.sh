#!/usr/bin/env bash
# The cross-model figures of the blocking chapters (fork-per-client,
# prefork, thread-per-client, thread-pool), in one session so that they can
# be compared as ratios:
#
#   1. `echo-bench all` over the blocking models and epoll: conns-1,
#      conns-50, conns-1000 and reconnect-50 (a new connection per
#      message), with CPU per echo and the cgroup's peak memory;
#   2. proportional set size (PSS, summed over the tree at the window's
#      edges: `--measure proc`) at 1, 50 and 1,000 connections;
#   3. the Python twins of the seeds (twins/socketserver_echo.py) against
#      the Rust models at 50 connections, persistent and reconnecting.
#
# Usage: scripts/measure/blocking-verdicts.sh [OUT_DIR]   (default /tmp/verdicts)
# Everything is written to OUT_DIR, one log per step; the summary lines are
# printed as they come. Takes about 15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/verdicts}
mkdir -p "$out"
ulimit -n "$(ulimit -Hn)"
bench=target/release/echo-bench
cargo build -q --release --workspace --bins

models=(iterative fork-per-client prefork thread-per-client thread-pool epoll)
blocking=(fork-per-client prefork thread-per-client thread-pool)

echo "== 1. echo-bench all ($(IFS=,; echo "${models[*]}"))"
$bench all --models "$(IFS=,; echo "${models[*]}")" --repeat 3 --out "$out/all" \
  2>"$out/all.log"
cat "$out"/all/*/report.md

echo "== 2. PSS of the tree (--measure proc) at 1, 50 and 1,000 connections"
for m in "${blocking[@]}" epoll; do
  for c in 1 50 1000; do
    echo "-- $m conns=$c"
    $bench run "$m" --measure proc --conns "$c" --messages 20000 --repeat 3 \
      >"$out/pss-$m-$c.log" 2>&1 || true
    grep -E "peak memory|server \(|summary" "$out/pss-$m-$c.log" | sed 's/^ *//'
  done
done

echo "== 3. the Python twins against the Rust models, 50 connections"
twin=twins/socketserver_echo.py
for shape in "--messages 100000" "--messages 20000 --reconnect"; do
  for m in "${blocking[@]}"; do
    echo "-- $m $shape"
    # shellcheck disable=SC2086
    $bench run "$m" --conns 50 $shape --repeat 3 >"$out/twin-$m-${shape// /_}.log" 2>&1 || true
    grep -E "server \(|summary" "$out/twin-$m-${shape// /_}.log" | sed 's/^ *//'
  done
  for mode in forking threading; do
    echo "-- python $mode $shape"
    # shellcheck disable=SC2086
    $bench run --bin "$twin" --conns 50 $shape --repeat 3 -- --mode "$mode" \
      >"$out/twin-py-$mode-${shape// /_}.log" 2>&1 || true
    grep -E "server \(|summary" "$out/twin-py-$mode-${shape// /_}.log" | sed 's/^ *//'
  done
done
