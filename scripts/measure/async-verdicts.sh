#!/usr/bin/env bash
# The cross-model figures of the async and completion chapters
# (async-from-scratch, tokio, io-uring, sigio), in one session so that they
# can be compared as ratios with epoll:
#
#   1. all:    `echo-bench all` over every built model: 1, 50 and 1,000
#              connections and a new connection per message (io_uring
#              against epoll at 1, 50 and 1,000; and how long the main
#              job takes with every model built);
#   2. fifty:  CPU per echo at 50 connections, 100,000 messages, 5
#              repetitions: epoll, tokio in both flavours, the runtime
#              built here, io-uring in both modes, sigio (targets: tokio
#              within 1.10x of epoll, async-from-scratch within 1.15x,
#              io-uring at most 0.85x);
#   3. c10k:   10,000 connections open-loop at 20,000 messages/s (target:
#              p99 <= 5 ms and <= 64 MiB).
#
# Usage: scripts/measure/async-verdicts.sh [OUT_DIR] [STEP...]
#   (default OUT_DIR /tmp/async; default steps: all three, in order)
# One log per run in OUT_DIR; the lines that matter are printed as they
# come. Takes about 25 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-/tmp/async}
shift || true
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(all fifty c10k)
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

# Each configuration: the model, then its flags.
configs=(
  "epoll"
  "tokio"
  "tokio --flavor multi-thread --workers 1"
  "async-from-scratch"
  "io-uring"
  "io-uring --single-shot"
  "sigio"
)

for step in "${steps[@]}"; do
  case $step in
  all)
    echo "== 1. echo-bench all, every built model"
    start=$SECONDS
    $bench all --repeat 3 --out "$out/all" 2>"$out/all.log"
    echo "   (echo-bench all took $((SECONDS - start)) s)"
    cat "$out"/all/*/report.md
    ;;
  fifty)
    echo "== 2. CPU per echo at 50 connections"
    for c in "${configs[@]}"; do
      set -- $c
      run "fifty-${c// /}" "$1" --conns 50 --messages 100000 --repeat 5 -- "${@:2}"
    done
    ;;
  c10k)
    echo "== 3. 10,000 connections, open loop at 20,000 msg/s for 10 s"
    for c in "${configs[@]}"; do
      set -- $c
      run "c10k-${c// /}" "$1" --conns 10000 --rate 20000 --duration 10 --repeat 3 -- "${@:2}"
    done
    ;;
  *)
    echo "unknown step: $step (all fifty c10k)" >&2
    exit 2
    ;;
  esac
done
