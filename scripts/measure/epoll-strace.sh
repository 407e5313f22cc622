#!/usr/bin/env bash
# The system calls of echo-epoll in one mode, counted by strace over all its
# threads (-f): one connection carrying M echoes of 64 bytes (20,000 by
# default), the same short load the other chapters trace; with CONNS > 1,
# that many connections sharing the M messages.
#
#   bash scripts/measure/epoll-strace.sh [CONNS] [MESSAGES] [-- model flags]
#   bash scripts/measure/epoll-strace.sh 1 20000                      # level-triggered
#   bash scripts/measure/epoll-strace.sh 1 20000 -- --edge-triggered
#
# BIN_DIR names the folder of echo-epoll and echo-bench (default
# target/release). Prints strace's -c table.
#
# strace stops the server at every system call, which slows each call by
# tens of microseconds and so changes what a timing-dependent loop does
# (edge-triggered, the client's next message may arrive while the server
# is still in its turn). TRACER=perf counts the same calls with
# `perf stat` on the kernel's syscall tracepoints instead, which does not
# stop the server: epoll_wait, recvfrom (and those that failed with
# EAGAIN), sendto, epoll_ctl.
set -euo pipefail
cd "$(dirname "$0")/../.."
conns=${1:-1}
messages=${2:-20000}
shift $(( $# < 2 ? $# : 2 ))
[ "${1:-}" = "--" ] && shift
bin=${BIN_DIR:-target/release}
out=$(mktemp)
ready=$(mktemp)
trap 'rm -f "$out" "$ready"' EXIT

if [ "${TRACER:-strace}" = perf ]; then
  perf stat -x, -o "$out" \
    -e syscalls:sys_enter_epoll_wait -e syscalls:sys_enter_recvfrom \
    -e syscalls:sys_exit_recvfrom --filter 'ret == -11' \
    -e syscalls:sys_enter_sendto -e syscalls:sys_enter_epoll_ctl \
    -- "$bin/echo-epoll" --addr 127.0.0.1:0 "$@" >"$ready" &
else
  strace -f -c -o "$out" "$bin/echo-epoll" --addr 127.0.0.1:0 "$@" >"$ready" &
fi
tracer=$!
# The readiness line carries the port; wait for it, bounded.
for _ in $(seq 100); do
  grep -q '^listening on' "$ready" && break
  sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$ready")
[ -n "$addr" ] || { echo "no readiness line" >&2; kill "$tracer"; exit 1; }

timeout 300 "$bin/echo-bench" load --addr "$addr" --conns "$conns" --size 64 \
  --messages "$messages" >/dev/null
# SIGINT to the server (the tracer's child), not to the tracer: the server drains
# and exits 0, and strace then writes its table.
server=$(pgrep -P "$tracer" -x echo-epoll | head -n 1)
kill -INT "$server"
timeout 30 tail --pid="$tracer" -f /dev/null || true
wait "$tracer" || true
cat "$out"
