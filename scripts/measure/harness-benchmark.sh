#!/usr/bin/env bash
# The load generator measured against itself: two echo-bench builds (OLD, the
# one before, and NEW) driving echo-epoll, interleaved run by run so that
# both see the same busy machine, and compared by ratios.
#
#   bash scripts/measure/harness-benchmark.sh syscalls   # strace -f -c on the load process
#   bash scripts/measure/harness-benchmark.sh perf       # the same counted by perf, untraced
#   bash scripts/measure/harness-benchmark.sh matrix     # echo-bench run epoll, 50 .. 19,000 conns
#   bash scripts/measure/harness-benchmark.sh            # all three
#
# OLD_DIR and NEW_DIR name folders holding echo-bench and echo-epoll
# (defaults /tmp/old-bench and target/release). Build the old one from a
# commit without touching the checkout, e.g.:
#   mkdir -p /tmp/old-src && git archive main | tar -x -C /tmp/old-src
#   (cd /tmp/old-src && CARGO_TARGET_DIR=$PWD/target/old cargo build --release \
#      -p echo-bench -p echo-epoll)
#   mkdir -p /tmp/old-bench && cp target/old/release/echo-{bench,epoll} /tmp/old-bench/
# REPEAT (default 2) rounds of the matrix; OUT (default /tmp/harness-benchmark)
# keeps every JSON file and printed report.
#
# syscalls: one echo-epoll per workload, pinned to CPU 0, the load (pinned to
# CPU 1) under `strace -f -c`; prints strace's table and the calls per
# verified message. strace stops the load at every call, which slows it and
# so lets more timers fall due per wake-up: the counts are the mechanism's,
# the absolute rates are not the untraced ones. Connection setup (socket,
# connect, epoll_ctl, setsockopt, ...) is included in the totals, amortised
# over the messages.
#
# perf: the same kind of load under `perf stat` on the kernel's syscall
# tracepoints and the context-switch counter, which do not stop the load:
# system calls and wake-ups (voluntary context switches, mostly a blocking
# epoll_wait) per message at the real pace, setup included.
#
# matrix: `echo-bench run epoll --repeat 1` per cell (the server in a cgroup,
# pinned to CPU 0; the load on the other CPU), closed and open loop at 50,
# 1,000, 10,000 and 19,000 connections; prints one line per run with the
# client CPU per message, the server CPU per echo, their ratio, the send-lag
# percentiles (NEW only: OLD does not measure them) and the client-bound flag.
set -euo pipefail
cd "$(dirname "$0")/../.."
old=${OLD_DIR:-/tmp/old-bench}
new=${NEW_DIR:-target/release}
repeat=${REPEAT:-2}
out=${OUT:-/tmp/harness-benchmark}
what=${1:-all}
mkdir -p "$out"
# 19,000 connections need 19,000 descriptors on each side.
ulimit -n 20000
for d in "$old" "$new"; do
  [ -x "$d/echo-bench" ] && [ -x "$d/echo-epoll" ] ||
    { echo "$d lacks echo-bench or echo-epoll" >&2; exit 1; }
done
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); cpu: $(sed -n 's/^model name\t: //p' /proc/cpuinfo | head -n 1); cores: $(nproc)"
echo "old: $old/echo-bench; new: $new/echo-bench"

# strace_load NAME DIR LOAD-ARGS...: one traced load against a fresh server.
strace_load() {
  local name=$1 dir=$2
  shift 2
  local ready table report
  ready=$(mktemp)
  table="$out/strace-$name.txt"
  report="$out/strace-$name.report"
  taskset -c 0 "$new/echo-epoll" --addr 127.0.0.1:0 --max-conns 20000 >"$ready" &
  local server=$!
  for _ in $(seq 100); do
    grep -q '^listening on' "$ready" && break
    sleep 0.1
  done
  local addr
  addr=$(sed -n 's/^listening on //p' "$ready")
  [ -n "$addr" ] || { echo "no readiness line" >&2; kill "$server"; exit 1; }
  timeout 300 taskset -c 1 strace -f -c -o "$table" \
    "$dir/echo-bench" load --addr "$addr" "$@" >"$report"
  kill -INT "$server"
  timeout 30 tail --pid="$server" -f /dev/null || true
  rm -f "$ready"
  local msgs
  msgs=$(sed -n 's/^messages *\([0-9]*\) .*/\1/p' "$report")
  echo "--- $name: $* ($msgs messages)"
  awk -v m="$msgs" '
    $NF ~ /^(write|sendto|read|recvfrom|epoll_wait|epoll_pwait|timerfd_settime|total)$/ {
      printf "  %-16s %9d calls  %6.2f per message\n", $NF, $4, $4 / m
    }' "$table"
}

syscalls() {
  echo "== system calls per message (strace -f -c on the load process)"
  for round in old new; do
    local dir
    dir=$([ "$round" = old ] && echo "$old" || echo "$new")
    strace_load "closed50-$round" "$dir" --conns 50 --size 64 --messages 50000
    strace_load "open1000-$round" "$dir" --conns 1000 --size 64 --rate 10000 --duration 3
    strace_load "open10000-$round" "$dir" --conns 10000 --size 64 --rate 20000 --duration 3
  done
}

# perf_load NAME DIR LOAD-ARGS...: one load under perf stat against a fresh server.
perf_load() {
  local name=$1 dir=$2
  shift 2
  local ready counts report
  ready=$(mktemp)
  counts="$out/perf-$name.csv"
  report="$out/perf-$name.report"
  taskset -c 0 "$new/echo-epoll" --addr 127.0.0.1:0 --max-conns 20000 >"$ready" &
  local server=$!
  for _ in $(seq 100); do
    grep -q '^listening on' "$ready" && break
    sleep 0.1
  done
  local addr
  addr=$(sed -n 's/^listening on //p' "$ready")
  [ -n "$addr" ] || { echo "no readiness line" >&2; kill "$server"; exit 1; }
  timeout 300 taskset -c 1 perf stat -x, -o "$counts" \
    -e context-switches -e raw_syscalls:sys_enter \
    -e syscalls:sys_enter_epoll_wait -e syscalls:sys_enter_timerfd_settime \
    -e syscalls:sys_enter_read -e syscalls:sys_enter_recvfrom -e syscalls:sys_enter_sendto \
    -- "$dir/echo-bench" load --addr "$addr" "$@" >"$report"
  kill -INT "$server"
  timeout 30 tail --pid="$server" -f /dev/null || true
  rm -f "$ready"
  local msgs
  msgs=$(sed -n 's/^messages *\([0-9]*\) .*/\1/p' "$report")
  printf '%-18s %7d msgs ' "$name" "$msgs"
  awk -F, -v m="$msgs" '/^[0-9]/ {
      n = $3; sub(/^(raw_)?syscalls:sys_enter_?/, "", n); if (n == "") n = "all-syscalls"
      printf " %s %.2f", n, $1 / m
    } END { print "" }' "$counts"
}

perf_counts() {
  echo "== per message, untraced (perf stat; the load on CPU 1, echo-epoll on CPU 0)"
  for round in $(seq "$repeat"); do
    for which in old new; do
      local dir
      dir=$([ "$which" = old ] && echo "$old" || echo "$new")
      perf_load "closed50-$which" "$dir" --conns 50 --size 64 --messages 200000
      perf_load "open1000-$which" "$dir" --conns 1000 --size 64 --rate 20000 --duration 5
      perf_load "open10000-$which" "$dir" --conns 10000 --size 64 --rate 20000 --duration 5
      perf_load "open19000-$which" "$dir" --conns 19000 --size 64 --rate 50000 --duration 5
    done
  done
}

# cell NAME DIR RUN-ARGS...: one `run epoll` repetition, summarised.
cell() {
  local name=$1 dir=$2
  shift 2
  local json="$out/$name.json"
  timeout 600 "$dir/echo-bench" run epoll --repeat 1 --json "$json" "$@" >"$out/$name.txt" 2>&1 ||
    { echo "$name: failed, see $out/$name.txt"; return 0; }
  jq -r --arg name "$name" '.results[0] as $r |
    ($r.throughput_msgs_per_s * $r.mean) as $msgs |
    ($r.client.cpu_s * 1e6 / $msgs) as $client |
    $r.server.cpu_us_per_echo as $server |
    [$name, ($msgs | floor),
     "client \($client * 100 | round / 100) µs/msg",
     "server \($server * 100 | round / 100) µs/echo",
     "ratio \($client / $server * 100 | round / 100)",
     "latency p50/p99 \($r.latency_us.p50)/\($r.latency_us.p99) µs",
     (if $r.client.send_lag_us then "send lag p50/p99/max \($r.client.send_lag_us.p50)/\($r.client.send_lag_us.p99)/\($r.client.send_lag_us.max) µs" else "send lag -" end),
     "client-bound \($r.client.client_bound // $r.client.saturated)"
    ] | join("  ")' "$json"
}

matrix() {
  echo "== echo-bench run epoll, 64 B messages, one repetition per cell, old and new interleaved"
  for round in $(seq "$repeat"); do
    for conns in 50 1000 10000 19000; do
      local extra=() closed rate
      case $conns in
        50) closed=200000 rate=20000 ;;
        1000) closed=200000 rate=20000 ;;
        10000) closed=200000 rate=20000 ;;
        19000) closed=190000 rate=50000 extra=(-- --max-conns 20000) ;;
      esac
      for which in old new; do
        local dir
        dir=$([ "$which" = old ] && echo "$old" || echo "$new")
        cell "r$round-closed-$conns-$which" "$dir" --conns "$conns" --messages "$closed" "${extra[@]}"
        cell "r$round-open-$conns-$which" "$dir" --conns "$conns" --rate "$rate" --duration 5 "${extra[@]}"
      done
    done
  done
}

case $what in
  syscalls) syscalls ;;
  perf) perf_counts ;;
  matrix) matrix ;;
  all) syscalls; perf_counts; matrix ;;
  *) echo "usage: $0 [syscalls|perf|matrix|all]" >&2; exit 2 ;;
esac
