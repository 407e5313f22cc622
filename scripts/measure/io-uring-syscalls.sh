#!/usr/bin/env bash
# System calls per echo of echo-io-uring (default multishot mode and
# --single-shot) against echo-epoll, at 1, 50 and 1,000 connections,
# counted with `perf stat` on the kernel's syscall tracepoints.
#
#   bash scripts/measure/io-uring-syscalls.sh [CONNS...]    # default: 1 50 1000
#   REPEAT=3 MESSAGES=100000 bash scripts/measure/io-uring-syscalls.sh 50
#
# Why perf and not `strace -f -c`: strace stops the server at every call,
# for tens of microseconds, so more completions pile up between two
# io_uring_enter calls than would without it, and the batching this
# measures comes out better than it is. The tracepoints count without
# stopping anyone.
#
# Each configuration runs like `echo-bench run`: the server pinned to CPU 0
# (under `perf stat`, which counts the server only, not itself), the load
# (`echo-bench load`, 64-byte messages, closed loop) pinned to CPU 1. The
# server is stopped with SIGINT, so the counts include start-up, the
# connections' set-up and shutdown. To take those out, each configuration
# also runs a short load of one message per connection (BASE), and the
# figure per echo is the difference: (calls(M) - calls(BASE)) / (M - C).
#
# BIN_DIR names the folder of the binaries (default target/release). One
# line per run, then the figures per echo, on stdout.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${BIN_DIR:-target/release}
repeat=${REPEAT:-3}
conns_list=("$@")
[ ${#conns_list[@]} -eq 0 ] && conns_list=(1 50 1000)
ulimit -n 20000
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The configurations: a label, the binary, its flags.
configs=(
  "epoll|echo-epoll|"
  "io-uring|echo-io-uring|"
  "io-uring --single-shot|echo-io-uring|--single-shot"
)
events=(
  raw_syscalls:sys_enter
  syscalls:sys_enter_io_uring_enter
  syscalls:sys_enter_epoll_wait
  syscalls:sys_enter_recvfrom
  syscalls:sys_enter_sendto
  task-clock
)

# one BINARY FLAGS CONNS MESSAGES: one server under perf, one load; prints
# the counts of `events`, in order, space-separated.
one() {
  local binary=$1 flags=$2 conns=$3 messages=$4
  local out=$work/perf ready=$work/ready
  rm -f "$out" "$ready"
  local args=()
  for e in "${events[@]}"; do args+=(-e "$e"); done
  # shellcheck disable=SC2086 # flags: zero or one word
  taskset -c 0 perf stat -x, -o "$out" "${args[@]}" -- \
    "$bin/$binary" --addr 127.0.0.1:0 $flags >"$ready" 2>/dev/null &
  local tracer=$!
  # The readiness line carries the port; wait for it, bounded.
  local addr=
  for _ in $(seq 100); do
    addr=$(sed -n 's/^listening on //p' "$ready" 2>/dev/null)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "no readiness line from $binary" >&2; kill "$tracer"; exit 1; }
  taskset -c 1 timeout 300 "$bin/echo-bench" load --addr "$addr" --conns "$conns" \
    --size 64 --messages "$messages" >/dev/null
  # SIGINT to the server (perf's child), not to perf: the server drains and
  # exits 0, then perf writes its counts.
  local server
  server=$(pgrep -P "$tracer" -x "$binary" | head -n 1)
  kill -INT "$server"
  timeout 30 tail --pid="$tracer" -f /dev/null || true
  wait "$tracer" || true
  local line=
  for e in "${events[@]}"; do
    line+="$(awk -F, -v ev="$e" '$3 == ev { print $1 }' "$out") "
  done
  echo "$line"
}

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs, kernel $(uname -r)"
echo "# per run: config conns messages | all-syscalls io_uring_enter epoll_wait recvfrom sendto task-clock-ms"
for conns in "${conns_list[@]}"; do
  if [ "$conns" -eq 1 ]; then messages=${MESSAGES:-20000}; else messages=${MESSAGES:-100000}; fi
  for c in "${configs[@]}"; do
    IFS='|' read -r label binary flags <<<"$c"
    base=$(one "$binary" "$flags" "$conns" "$conns")
    echo "$label $conns $conns | $base"
    for _ in $(seq "$repeat"); do
      big=$(one "$binary" "$flags" "$conns" "$messages")
      echo "$label $conns $messages | $big"
      # Per echo: the difference from the base run, over the extra echoes.
      paste -d' ' <(tr ' ' '\n' <<<"$big" | sed '/^$/d') <(tr ' ' '\n' <<<"$base" | sed '/^$/d') |
        awk -v n=$((messages - conns)) -v label="$label" -v c="$conns" '
          { d[NR] = ($1 - $2) / n }
          END {
            printf "  per echo: %s at %d conns: syscalls %.3f (io_uring_enter %.3f, epoll_wait %.3f, recvfrom %.3f, sendto %.3f); CPU %.2f us\n",
              label, c, d[1], d[2], d[3], d[4], d[5], d[6] * 1000
          }'
    done
  done
done
