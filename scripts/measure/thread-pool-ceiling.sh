#!/usr/bin/env bash
# The thread pool's ceiling: latency and errors when closed-loop clients
# outnumber the workers, under both full-queue policies, and the default
# pool against thread-per-client at 50 connections, in one session.
# Usage: bash scripts/measure/thread-pool-ceiling.sh [LOG]
# Needs `cargo build --release --workspace --bins` first.
set -uo pipefail
cd "$(dirname "$0")/../.."
ulimit -n 20000
log=${1:-/dev/stdout}
bench=target/release/echo-bench

{
  date -u '+# %Y-%m-%d %H:%M:%S UTC'
  lscpu | grep 'Model name'
  echo "cores: $(nproc)"
  for policy in wait refuse; do
    for k in 4 8 16 50; do
      echo "## $bench run thread-pool --conns $k --repeat 3 -- --workers 8 --queue 8 --when-full $policy"
      timeout 600 "$bench" run thread-pool --conns "$k" --repeat 3 -- \
        --workers 8 --queue 8 --when-full "$policy" 2>&1
      echo "exit status: $?"
    done
  done
  echo "## $bench run thread-pool --conns 50 --repeat 3"
  timeout 600 "$bench" run thread-pool --conns 50 --repeat 3 2>&1
  echo "exit status: $?"
  echo "## $bench run thread-per-client --conns 50 --repeat 3"
  timeout 600 "$bench" run thread-per-client --conns 50 --repeat 3 2>&1
  echo "exit status: $?"
} >>"$log"
