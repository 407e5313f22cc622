#!/usr/bin/env bash
# The cross-model figures of the readiness chapters (busy-poll, select,
# poll, epoll and its two new modes, mio), in one session so that they can
# be compared as ratios. Each step answers one claim of the seeds or one
# performance target:
#
#   1. idle:     server CPU with 1,000 idle clients beside one that sends
#                10 messages a second: busy-poll (with its default pause,
#                a short one, and none) against select, poll and epoll
#                ("busy-polling wastes the CPU");
#   2. scan:     CPU per echo for one busy client beside 0, 1,000 and
#                10,000 idle ones, for select (to its limit), poll, epoll
#                and mio ("select and poll slow down as more descriptors
#                are watched, epoll does not");
#   3. all:      `echo-bench all` over the blocking threads and the
#                readiness models: 1, 50 and 1,000 connections and a new
#                connection per message ("multiplexing only pays with many
#                connections");
#   4. modes:    epoll level-triggered, edge-triggered and mio at 50 and
#                1,000 connections (targets: mio within 1.05x of epoll, ET
#                no worse than LT);
#   5. reactors: epoll --threads 1 and 2, pinned to one CPU and unpinned
#                over both (target: 2 reactors give more throughput when
#                the load is not client-bound);
#   6. c10k:     10,000 connections open-loop at 20,000 messages/s: p99
#                and peak memory (target: p99 <= 5 ms, <= 64 MiB);
#   7. twin:     echo-select against the seeds' select server in Python
#                (twins/select_echo.py), 50 connections.
#
# Usage: scripts/measure/readiness-verdicts.sh [OUT_DIR] [STEP...]
#   (default OUT_DIR /tmp/readiness; default steps: all seven, in order)
# One log per run in OUT_DIR; the lines that matter are printed as they
# come. Takes about 25 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/readiness}
shift || true
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(idle scan all modes reactors c10k twin)
mkdir -p "$out"
ulimit -n "$(ulimit -Hn)"
bench=target/release/echo-bench
cargo build -q --release --workspace --bins

# run LABEL ECHO-BENCH-RUN-ARGS...: one `echo-bench run`, its log kept, its
# summary lines shown.
run() {
  local label=$1
  shift
  local log="$out/${label}.log"
  echo "-- $label: echo-bench run $*"
  $bench run "$@" >"$log" 2>&1 || echo "   (exit $?: see $log)"
  grep -E "latency|server \(|server: peak|errors [^n]|summary" "$log" | sed 's/^ */   /'
}

for step in "${steps[@]}"; do
  case $step in
  idle)
    echo "== 1. server CPU with 1,000 idle clients (one more sends 10 msg/s for 10 s)"
    shape=(--conns 1 --idle 1000 --rate 10 --duration 10 --repeat 3)
    run idle-busy-poll busy-poll "${shape[@]}"
    run idle-busy-poll-100us busy-poll "${shape[@]}" -- --idle-sleep-us 100
    run idle-busy-poll-spin busy-poll "${shape[@]}" -- --idle-sleep-us 0
    for m in select poll epoll; do run "idle-$m" "$m" "${shape[@]}"; done
    ;;
  scan)
    echo "== 2. CPU per echo, one busy client beside N idle ones"
    for m in select poll epoll mio; do
      for n in 0 1000 10000; do
        # select cannot watch descriptor 1024 or above: 10,000 is past it
        [ "$m" = select ] && [ "$n" = 10000 ] && continue
        run "scan-$m-$n" "$m" --conns 1 --idle "$n" --messages 50000 --repeat 3 \
          -- --max-conns 20000
      done
    done
    ;;
  all)
    echo "== 3. echo-bench all, blocking threads beside the readiness models"
    $bench all --models thread-per-client,thread-pool,busy-poll,select,poll,epoll,mio \
      --repeat 3 --out "$out/all" 2>"$out/all.log"
    cat "$out"/all/*/report.md
    ;;
  modes)
    echo "== 4. level-triggered, edge-triggered, mio"
    for c in 50 1000; do
      run "modes-epoll-$c" epoll --conns "$c" --messages 100000 --repeat 5
      run "modes-epoll-et-$c" epoll --conns "$c" --messages 100000 --repeat 5 -- --edge-triggered
      run "modes-mio-$c" mio --conns "$c" --messages 100000 --repeat 5
    done
    ;;
  reactors)
    echo "== 5. one reactor or two: pinned (server on CPU 0) and unpinned (server and load on both)"
    for t in 1 2; do
      run "reactors-$t-pinned" epoll --conns 50 --messages 100000 --repeat 3 -- --threads "$t"
      run "reactors-$t-unpinned" epoll --unpinned --conns 50 --threads 2 --messages 100000 \
        --repeat 3 -- --threads "$t"
    done
    ;;
  c10k)
    echo "== 6. 10,000 connections, open loop at 20,000 msg/s for 10 s"
    for m in poll epoll "epoll --edge-triggered" "epoll --threads 2" mio; do
      set -- $m
      run "c10k-${m// /}" "$1" --conns 10000 --rate 20000 --duration 10 --repeat 3 -- "${@:2}"
    done
    ;;
  twin)
    echo "== 7. echo-select against the seeds' select server (Python), 50 connections"
    for r in 1 2; do
      run "twin-select-$r" select --conns 50 --messages 100000 --repeat 3
      run "twin-python-$r" --bin twins/select_echo.py --conns 50 --messages 100000 --repeat 3
    done
    ;;
  *)
    echo "unknown step: $step (idle scan all modes reactors c10k twin)" >&2
    exit 2
    ;;
  esac
done
