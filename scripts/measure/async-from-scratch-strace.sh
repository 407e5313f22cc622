#!/usr/bin/env bash
# The system calls of echo-async-from-scratch beside echo-epoll's
# (level-triggered, and --edge-triggered) and beside the runtime of the
# async-requeue-waker exercise (the same design without readiness bits),
# over the same short closed-loop run: how many calls each echo costs, and
# whether the readiness bits save the read that ends in EAGAIN.
#
#   bash scripts/measure/async-from-scratch-strace.sh count MODEL [CONNS] [MESSAGES] [REPEAT]
#   bash scripts/measure/async-from-scratch-strace.sh trace MODEL
#   bash scripts/measure/async-from-scratch-strace.sh perf MODEL [CONNS] [MESSAGES] [REPEAT]
#   bash scripts/measure/async-from-scratch-strace.sh profile MODEL [CONNS] [MESSAGES] [REPEAT]
#
# MODEL: async (echo-async-from-scratch), epoll, epoll-et (echo-epoll
# --edge-triggered), ex-async (ex-async-requeue-waker, which must have been
# built with `--features solution`: the starter loses wake-ups).
#
# count: strace -f -c over the server (every thread), CONNS connections
#   (default 50) carrying MESSAGES 64-byte echoes in all (default 20000),
#   REPEAT times (default 1), a fresh server each; prints strace's table for
#   each run, then one line per run with the calls per echo.
# trace: one connection, three echoes, the event-loop calls one by one.
# perf: the same run as count, without strace: the kernel's syscall
#   tracepoints counted by perf stat, which does not stop the server at
#   each call (strace does, and so changes the race between the client's
#   next message and the server's next read). Counts calls, reads that
#   failed (EAGAIN) and waits that returned no event.
# profile: the same run sampled by perf record (cpu-clock, 5 kHz, call
#   chains): the server's CPU time inside each of the event-loop calls, and
#   everything else (for the runtime: the executor, the wakers, the futures'
#   polls), in microseconds per echo. Sampling slows the server, so compare
#   the models with each other, not with echo-bench run's CPU per echo.
# The server is pinned to CPU 0 and the load to CPU 1, as echo-bench run
# does.
#
# Needs strace (perf for perf and profile), taskset and release binaries:
# BIN_DIR (default target/release) must hold the server and echo-bench.
# (Derived from mio-strace.sh, which does the same for echo-mio.)
set -euo pipefail
cd "$(dirname "$0")/../.."
usage="usage: async-from-scratch-strace.sh count|perf|profile|trace async|epoll|epoll-et|ex-async [CONNS] [MESSAGES] [REPEAT]"
mode=${1:?$usage}
model=${2:?$usage}
conns=${3:-50}
messages=${4:-20000}
repeat=${5:-1}
bin_dir=${BIN_DIR:-target/release}
case "$model" in
  async) bin=echo-async-from-scratch; flags=() ;;
  ex-async) bin=ex-async-requeue-waker; flags=() ;;
  epoll) bin=echo-epoll; flags=() ;;
  epoll-et) bin=echo-epoll; flags=(--edge-triggered) ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
case "$mode" in
  count) strace_opts=(-f -c) ;;
  trace) strace_opts=(-f -e trace=epoll_wait,epoll_ctl,accept4,recvfrom,sendto,shutdown)
         conns=1; messages=3; repeat=1 ;;
  perf|profile) command -v perf >/dev/null || { echo "missing: perf" >&2; exit 1; } ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
for tool in strace taskset "$bin_dir/$bin" "$bin_dir/echo-bench"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

out=$(mktemp)
ready=$(mktemp)
trap 'rm -f "$out" "$out.data" "$ready"' EXIT
summary=()

for rep in $(seq "$repeat"); do
  : >"$ready"
  if [ "$mode" = perf ]; then
    # Every thread of the server, from its start to its exit (perf stat
    # follows threads). -x, gives count,unit,event,... lines.
    taskset -c 0 perf stat -x, -o "$out" \
      -e syscalls:sys_enter_epoll_wait \
      -e syscalls:sys_exit_epoll_wait --filter 'ret == 0' \
      -e syscalls:sys_enter_epoll_ctl \
      -e syscalls:sys_enter_recvfrom \
      -e syscalls:sys_exit_recvfrom --filter 'ret < 0' \
      -e syscalls:sys_enter_sendto \
      "$bin_dir/$bin" --addr 127.0.0.1:0 "${flags[@]}" >"$ready" &
  elif [ "$mode" = profile ]; then
    taskset -c 0 perf record -q -e cpu-clock -F 5000 -g -o "$out.data" -- \
      "$bin_dir/$bin" --addr 127.0.0.1:0 "${flags[@]}" >"$ready" &
  else
    taskset -c 0 strace "${strace_opts[@]}" -o "$out" \
      "$bin_dir/$bin" --addr 127.0.0.1:0 "${flags[@]}" >"$ready" &
  fi
  tracer=$!
  # The readiness line carries the port; wait for it, bounded.
  for _ in $(seq 100); do
    grep -q '^listening on' "$ready" && break
    sleep 0.1
  done
  addr=$(sed -n 's/^listening on //p' "$ready")
  [ -n "$addr" ] || { echo "no readiness line" >&2; kill "$tracer"; exit 1; }

  # Every echoed byte is verified; a failed load fails the script.
  timeout 300 taskset -c 1 "$bin_dir/echo-bench" load --addr "$addr" \
    --conns "$conns" --size 64 --messages "$messages" >/dev/null

  # SIGTERM to the server (strace's or perf's child), not to the tracer:
  # the server drains and exits 0, and the tracer then writes its counts.
  # By parent, not by name: a command name longer than 15 characters is
  # cut short in the kernel's record of it, and pgrep -x would miss it.
  server=$(pgrep -P "$tracer" | head -n 1)
  kill -TERM "$server"
  timeout 30 tail --pid="$tracer" -f /dev/null || true
  wait "$tracer" || true

  if [ "$mode" = perf ]; then
    echo "== $model, run $rep: $conns connections, $messages echoes (perf stat, no strace)"
    grep '^[0-9]' "$out"
    # enter_epoll_wait, empty waits, epoll_ctl, enter_recvfrom, failed
    # recvfrom, sendto, in that order.
    summary+=("$(awk -F, -v m="$messages" -v model="$model" -v rep="$rep" '
      /^[0-9]/ { c[n++] = $1 }
      END {
        printf "%s run %d:  epoll_wait %d (%.3f/echo, %d empty)  epoll_ctl %d  recvfrom %d (%.3f/echo, %d failed = %.3f/echo)  sendto %d (%.3f/echo)  loop total %.3f/echo",
          model, rep, c[0], c[0] / m, c[1], c[2], c[3], c[3] / m, c[4], c[4] / m, c[5], c[5] / m,
          (c[0] + c[2] + c[3] + c[5]) / m
      }' "$out")")
    continue
  fi
  if [ "$mode" = profile ]; then
    echo "== $model, run $rep: $conns connections, $messages echoes (perf record)"
    # Inclusive ("children") time per symbol; the event count is in ns.
    perf report -i "$out.data" --children --sort sym --stdio -g none 2>/dev/null >"$out"
    rm -f "$out.data"
    summary+=("$(awk -v m="$messages" -v model="$model" -v rep="$rep" '
      /Event count/ { total = $NF }
      NF >= 2 && $(NF-1) == "[.]" && $NF ~ /^(__send|__libc_recv|epoll_wait)$/ { share[$NF] = $1 + 0 }
      END {
        us = total / 1000 / m
        printf "%s run %d:  server CPU %.2f us/echo (sampled)", model, rep, us
        n = split("__send __libc_recv epoll_wait", k, " ")
        rest = 100
        for (i = 1; i <= n; i++) {
          f = share[k[i]]; rest -= f
          printf "  %s %.2f us (%.1f%%)", k[i], us * f / 100, f
        }
        printf "  everything else %.2f us (%.1f%%)", us * rest / 100, rest
      }' "$out")")
    continue
  fi
  if [ "$mode" = trace ]; then
    cat "$out"
    exit 0
  fi
  echo "== $model, run $rep: $conns connections, $messages echoes"
  cat "$out"
  # Calls (and failed calls) per echo, for the event-loop calls.
  summary+=("$(awk -v m="$messages" -v model="$model" -v rep="$rep" '
    $NF ~ /^(epoll_wait|epoll_ctl|recvfrom|sendto)$/ {
      calls = $4; errors = ($6 == "" ? 0 : $5)
      line = line sprintf("  %s %d (%.3f/echo, %d failed)", $NF, calls, calls / m, errors)
      total += calls
    }
    END { printf "%s run %d:%s  loop total %.3f/echo", model, rep, line, total / m }
  ' "$out")")
done
echo
printf '%s\n' "${summary[@]}"
