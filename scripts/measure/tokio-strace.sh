#!/usr/bin/env bash
# The system calls of echo-tokio, in both runtime flavours, beside
# echo-epoll's over the same short closed-loop run: the calls each echo
# costs, how many reads end in EAGAIN (does the short-read shortcut of
# `clear_ready_matching` save the confirming read that echo-mio pays?), and
# what the multi-thread flavour adds (futex, epoll_wait from several
# threads, eventfd wake-ups).
#
#   bash scripts/measure/tokio-strace.sh count   tokio|tokio-mt|epoll [CONNS] [MESSAGES] [REPEAT]
#   bash scripts/measure/tokio-strace.sh perf    tokio|tokio-mt|epoll [CONNS] [MESSAGES] [REPEAT]
#   bash scripts/measure/tokio-strace.sh threads tokio|tokio-mt|epoll [CONNS] [MESSAGES]
#   bash scripts/measure/tokio-strace.sh trace   tokio|tokio-mt|epoll
#
# tokio is `echo-tokio` (current-thread, the default); tokio-mt is
# `echo-tokio --flavor multi-thread --workers 2`; epoll is `echo-epoll`
# (level-triggered).
# count: strace -f -c over every thread of the server, CONNS connections
#   (default 50) carrying MESSAGES 64-byte echoes in all (default 20000),
#   REPEAT times (default 1), a fresh server each; strace's table for each
#   run, then one line per run with the calls per echo.
# perf: the same run without strace: the kernel's syscall tracepoints
#   counted by perf stat, which does not stop the server at every call.
# threads: the event-loop calls (epoll_wait, futex, recvfrom, sendto,
#   write, read) counted per thread of the server, from strace -f's log.
# trace: one connection, three echoes, the event-loop calls one by one.
#
# Pinning: the current-thread server (and echo-epoll) runs on CPU 0 and
# the load on CPU 1, as `echo-bench run` does. The multi-thread server has
# two workers and the thread that runs `block_on`; pinned to one CPU they
# would only take turns, so tokio-mt is not pinned, and neither is its
# load: the three share the two cores (PIN=1 or PIN=0 overrides).
# strace slows every call by tens of microseconds, which changes any count
# that depends on timing (how many events one epoll_wait harvests, whether
# the client's next message is there before the server sleeps); perf mode
# changes the timing least.
#
# Needs strace (perf for perf), taskset and release binaries: BIN_DIR
# (default target/release) must hold echo-tokio, echo-epoll and echo-bench.
set -euo pipefail
cd "$(dirname "$0")/../.."
usage="usage: tokio-strace.sh count|perf|threads|trace tokio|tokio-mt|epoll [CONNS] [MESSAGES] [REPEAT]"
mode=${1:?$usage}
model=${2:?$usage}
conns=${3:-50}
messages=${4:-20000}
repeat=${5:-1}
bin_dir=${BIN_DIR:-target/release}
case "$model" in
  tokio) bin=echo-tokio; flags=(); pin=${PIN:-1} ;;
  tokio-mt) bin=echo-tokio; flags=(--flavor multi-thread --workers 2); pin=${PIN:-0} ;;
  epoll) bin=echo-epoll; flags=(); pin=${PIN:-1} ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
if [ "$pin" = 1 ]; then
  server_cpu=(taskset -c 0); load_cpu=(taskset -c 1)
else
  server_cpu=(); load_cpu=()
fi
loop_calls=epoll_wait,epoll_ctl,futex,recvfrom,sendto,read,write,accept4,shutdown
case "$mode" in
  count) strace_opts=(-f -c) ;;
  threads) strace_opts=(-f -e "trace=$loop_calls"); repeat=1 ;;
  trace) strace_opts=(-f -e "trace=$loop_calls")
         conns=1; messages=3; repeat=1 ;;
  perf) command -v perf >/dev/null || { echo "missing: perf" >&2; exit 1; } ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
for tool in strace taskset "$bin_dir/$bin" "$bin_dir/echo-bench"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

out=$(mktemp)
ready=$(mktemp)
trap 'rm -f "$out" "$ready"' EXIT
summary=()

for rep in $(seq "$repeat"); do
  : >"$ready"
  if [ "$mode" = perf ]; then
    # Every thread of the server, from its start to its exit (perf stat
    # follows threads); -x, gives count,unit,event,... lines.
    "${server_cpu[@]}" perf stat -x, -o "$out" \
      -e syscalls:sys_enter_epoll_wait \
      -e syscalls:sys_enter_recvfrom \
      -e syscalls:sys_exit_recvfrom --filter 'ret < 0' \
      -e syscalls:sys_enter_sendto \
      -e syscalls:sys_enter_futex \
      -e syscalls:sys_enter_write \
      -e syscalls:sys_enter_read \
      -e syscalls:sys_enter_epoll_ctl \
      "$bin_dir/$bin" --addr 127.0.0.1:0 "${flags[@]}" >"$ready" &
  else
    "${server_cpu[@]}" strace "${strace_opts[@]}" -o "$out" \
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
  timeout 300 "${load_cpu[@]}" "$bin_dir/echo-bench" load --addr "$addr" \
    --conns "$conns" --size 64 --messages "$messages" >/dev/null

  # SIGTERM to the server (the tracer's child), not to the tracer: the
  # server drains and exits 0, and the tracer then writes its counts.
  server=$(pgrep -P "$tracer" -x "$bin" | head -n 1)
  kill -TERM "$server"
  timeout 30 tail --pid="$tracer" -f /dev/null || true
  wait "$tracer" || true

  case "$mode" in
    perf)
      echo "== $model, run $rep: $conns connections, $messages echoes (perf stat, no strace)"
      grep '^[0-9]' "$out"
      # In the order of the -e options above.
      summary+=("$(awk -F, -v m="$messages" -v model="$model" -v rep="$rep" '
        /^[0-9]/ { c[n++] = $1 }
        END {
          printf "%s run %d (perf): epoll_wait %.3f  recvfrom %.3f (EAGAIN %.3f)  sendto %.3f  futex %.3f  write %.4f  read %.4f  per echo; epoll_ctl %d; loop calls %.3f/echo",
            model, rep, c[0] / m, c[1] / m, c[2] / m, c[3] / m, c[4] / m, c[5] / m, c[6] / m, c[7],
            (c[0] + c[1] + c[3] + c[4] + c[5] + c[6]) / m
        }' "$out")")
      ;;
    count)
      echo "== $model, run $rep: $conns connections, $messages echoes (strace -f -c)"
      cat "$out"
      # strace -c rows: % time, seconds, usecs/call, calls, [errors], name.
      summary+=("$(awk -v m="$messages" -v model="$model" -v rep="$rep" '
        $1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" {
          calls[$NF] = $4; errs[$NF] = (NF == 6 ? $5 : 0)
        }
        END {
          printf "%s run %d (strace): epoll_wait %.3f  recvfrom %.3f (EAGAIN %.3f)  sendto %.3f  futex %.3f  write %.4f  read %.4f  per echo; epoll_ctl %d; loop calls %.3f/echo",
            model, rep, calls["epoll_wait"] / m, calls["recvfrom"] / m, errs["recvfrom"] / m,
            calls["sendto"] / m, calls["futex"] / m, calls["write"] / m, calls["read"] / m,
            calls["epoll_ctl"],
            (calls["epoll_wait"] + calls["recvfrom"] + calls["sendto"] + calls["futex"] + calls["write"] + calls["read"]) / m
        }' "$out")")
      ;;
    threads)
      echo "== $model: $conns connections, $messages echoes, calls per thread (strace -f)"
      # Lines start with the thread id; "<... name resumed>" lines are the
      # second half of a call already counted.
      awk '
        $2 ~ /^[a-z_0-9]+\(/ { name = $2; sub(/\(.*/, "", name); n[$1, name]++; tids[$1] = 1; names[name] = 1 }
        END {
          for (t in tids) {
            line = "thread " t ":"
            for (k in names) if ((t, k) in n) line = line " " k " " n[t, k]
            print line
          }
        }' "$out" | sort
      ;;
    trace)
      cat "$out"
      ;;
  esac
done

for line in "${summary[@]}"; do echo "$line"; done
