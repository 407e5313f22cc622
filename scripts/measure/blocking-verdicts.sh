#!/usr/bin/env bash
# The cross-model figures of the blocking chapters (fork-per-client,
# prefork, thread-per-client, thread-pool), in one session so that they can
# be compared as ratios:
#
#   1. `echo-bench all` over the blocking models and epoll: conns-1,
#      conns-50, conns-1000 and reconnect-50 (a new connection per
#      message), with CPU per echo and the cgroup's peak memory;
#   2. proportional set size (PSS) of the whole tree with 1, 50 and 1,000
#      connections held open (scripts/measure/tree-memory.py);
#   3. the Python twins of the seeds (twins/socketserver_echo.py) against
#      the Rust models at 50 connections, persistent and reconnecting.
#
# Usage: scripts/measure/blocking-verdicts.sh [OUT_DIR]   (default /tmp/verdicts)
# Everything is written to OUT_DIR, one log per step; the summary lines are
# printed as they come. Takes about 25 minutes on 2 cores.
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

echo "== 2. PSS of the whole tree with 1, 50 and 1,000 connections open"
python3 scripts/measure/tree-memory.py --conns 1,50,1000 --repeat 3 | tee "$out/tree-memory.md"

echo "== 3. the Python twins against the Rust models, 50 connections"
twin=twins/socketserver_echo.py
for shape in "--messages 100000" "--messages 20000 --reconnect"; do
  # prefork twice: with its default workers (one per CPU), and with as
  # many workers as clients, the concurrency the Python forking server has.
  for m in "${blocking[@]}" "prefork -- --workers 50"; do
    log="$out/twin-${m// /_}-${shape// /_}.log"
    echo "-- $m $shape"
    # shellcheck disable=SC2086
    $bench run ${m%% *} --conns 50 $shape --repeat 3 ${m#"${m%% *}"} >"$log" 2>&1 || true
    grep -E "server \(|summary" "$log" | sed 's/^ *//'
  done
  for mode in forking threading; do
    echo "-- python $mode $shape"
    # shellcheck disable=SC2086
    $bench run --bin "$twin" --conns 50 $shape --repeat 3 -- --mode "$mode" \
      >"$out/twin-py-$mode-${shape// /_}.log" 2>&1 || true
    grep -E "server \(|summary" "$out/twin-py-$mode-${shape// /_}.log" | sed 's/^ *//'
  done
done
