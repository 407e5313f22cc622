#!/usr/bin/env bash
# Where a select server's CPU goes with one busy client and IDLE silent
# ones: perf samples the server (cpu-clock, kernel and user) while
# echo-bench drives one connection for SECS seconds, then prints the
# hottest symbols. With idle connections, the kernel's per-descriptor
# work in select (do_select asking each socket's poll method, hooking and
# unhooking a wait-queue entry on each) and the loop's own scans take the
# place of the echo itself.
#
#   bash scripts/measure/select-perf.sh [IDLE] [SECS]
#
# BIN is the server (default target/release/echo-select), BENCH the
# harness (default target/release/echo-bench). Needs perf, and a
# perf_event_paranoid setting (or root) that lets it sample the kernel.
set -euo pipefail
cd "$(dirname "$0")/../.."
idle=${1:-0}
secs=${2:-5}
bin=${BIN:-target/release/echo-select}
bench=${BENCH:-target/release/echo-bench}
ulimit -n 20000
data=$(mktemp)
ready=$(mktemp)
"$bin" --addr 127.0.0.1:0 >"$ready" &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$data" "$ready"' EXIT
for _ in $(seq 100); do
  grep -q '^listening on' "$ready" && break
  sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$ready")
[ -n "$addr" ] || { echo "no readiness line" >&2; exit 1; }

# The idle connections are opened before the load's clock starts; perf
# starts with the load and runs a little shorter, so it sees the steady
# state only.
timeout $((secs + 120)) "$bench" load --addr "$addr" --conns 1 --idle "$idle" --size 64 \
  --duration "$secs" >&2 &
load=$!
sleep 1 # a head start for the idle connections to be accepted
perf record -q -e cpu-clock -F 1999 -p "$server" -o "$data" -- sleep $((secs - 2)) 2>/dev/null
wait "$load"
echo "# $(date -u '+%F %T') UTC, $bin, 1 busy + $idle idle connections, perf cpu-clock over $((secs - 2)) s"
report=$(perf report -i "$data" --stdio --no-children --sort sym 2>/dev/null | grep -v '^#' | grep -v '^$')
echo "$report" | head -n 25
# Grouped: what select does for each watched socket (its poll method, the
# file lookup, hooking and unhooking a wait-queue entry); the spin locks
# with interrupts off, which both those hooks and the wake-ups take (a
# sample that falls while interrupts are off lands on the unlock, so this
# group cannot be split by caller); and the loop's own passes over its
# table (filling the sets, reading them back, the scan).
echo "$report" | awk '
  { pct = $1 + 0 }
  $2 == "[k]" { kernel += pct }
  $2 == "[.]" { user += pct }
  $3 ~ /^(sock_poll|tcp_poll|__pollwait|fdget|fput|tcp_stream_memory_free|do_select|core_sys_select|add_wait_queue|remove_wait_queue|poll_freewait|__list_del_entry_valid_or_report)$/ { per_socket += pct }
  $3 ~ /^_raw_spin_(lock_irqsave|unlock_irqrestore)$/ { locks += pct }
  $3 ~ /^finish_task_switch/ { switch += pct }
  $3 ~ /(echo_select::|nix::sys::select::FdSet|AsFd>::as_fd|retain_mut|extend_trusted)/ { scan += pct }
  END {
    printf "kernel %.1f%%, user %.1f%%\n", kernel, user
    printf "  select, per watched socket (poll methods, fd lookups, wait-queue hooks): %.1f%%\n", per_socket
    printf "  spin locks taken with interrupts off (wait queues, wake-ups): %.1f%%\n", locks
    printf "  context switches (finish_task_switch): %.1f%%\n", switch
    printf "  the loop filling, reading and scanning its sets (echo_select, FdSet, as_fd, Vec): %.1f%%\n", scan
  }'
