#!/usr/bin/env bash
# Times one fixed echo-bench load against one model with hyperfine, as an
# outside check on echo-bench's own timing: both write the same JSON schema.
#
#   scripts/hyperfine.sh MODEL [echo-bench load flags...]
#   scripts/hyperfine.sh epoll --conns 50 --size 64 --messages 50000
#
# Writes results/hyperfine-<model>-<UTC time>.json (results/ is not tracked). The server is
# started once and serves every run; hyperfine's times include the load
# generator's start-up and connection setup, which echo-bench's own
# figures exclude.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ]; then
  echo "usage: scripts/hyperfine.sh MODEL [echo-bench load flags...]" >&2
  exit 2
fi
model=$1
shift
[ $# -gt 0 ] || set -- --conns 50 --size 64 --messages 50000
command -v hyperfine >/dev/null || { echo "hyperfine is not installed (apt-get install hyperfine)" >&2; exit 1; }
[ -d "crates/echo-$model" ] || { echo "no model named '$model' (crates/echo-$model does not exist)" >&2; exit 2; }

cargo build --release -q -p echo-bench -p "echo-$model"
ulimit -n "$(ulimit -Hn)"

out=$(mktemp)
"target/release/echo-$model" --addr 127.0.0.1:0 >"$out" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 100); do
  grep -q '^listening on ' "$out" && break
  kill -0 $server 2>/dev/null || { echo "echo-$model exited before it was ready" >&2; exit 1; }
  sleep 0.05
done
addr=$(sed -n 's/^listening on //p' "$out")
[ -n "$addr" ] || { echo "echo-$model did not print its readiness line" >&2; exit 1; }

mkdir -p results
json="results/hyperfine-$model-$(date -u +%Y%m%d-%H%M%S).json"
hyperfine --warmup 1 --runs 10 --export-json "$json" \
  "target/release/echo-bench load --addr $addr $*"
echo "$json"
