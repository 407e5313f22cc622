#!/usr/bin/env bash
# What signal-driven I/O costs: signals and system calls per echo for
# echo-sigio beside echo-epoll, and the CPU per echo once the real-time
# signal queue overflows (RLIMIT_SIGPENDING set very low), where every
# overflow makes the loop scan all its connections.
#
#   bash scripts/measure/sigio-overflow.sh calls sigio|epoll [CONNS] [MESSAGES] [REPEAT] [SIGPENDING]
#   bash scripts/measure/sigio-overflow.sh cpu [CONNS] [MESSAGES] [REPEAT] [SIGPENDING] [IDLE]
#
# calls: a fresh server pinned to CPU 0, then CONNS connections (default 50)
#   carrying MESSAGES 64-byte echoes in all (default 100000) from
#   echo-bench load on CPU 1, REPEAT times (default 1). While the load runs,
#   `perf stat -p PID` counts the server's system calls (every thread:
#   raw_syscalls:sys_enter, and the loop's calls one by one), and a
#   system-wide `perf stat -a` counts the signals the kernel generates for
#   that pid (signal:signal_generate filtered on the pid: the kernel raises
#   them in the sender's context, the client's sendto on loopback, so a
#   per-process count of the server would see none). Prints one line per
#   run with the counts per echo.
# cpu: `echo-bench run --bin` over a wrapper that sets RLIMIT_SIGPENDING
#   (soft and hard) to SIGPENDING before it execs echo-sigio; "default"
#   (the default) leaves the limit as the shell has it. Prints echo-bench's
#   report (CPU per echo, throughput, latency), REPEAT repetitions
#   (default 3), each with a fresh server. IDLE (default 0) idle
#   connections besides (echo-bench's --idle): the regime where a scan
#   after an overflow is nearly all waste, since almost none of the
#   connections it reads from has anything to say.
#
# SIGPENDING in calls mode works the same way (the server is started
# through the wrapper), so the overflow regime's signals and calls can be
# counted too. The limit is compared with the pending signals of the whole
# user, every process included, so "default" is a normal queue (tens of
# thousands of places) and 8 means nearly every signal overflows while the
# server is busy.
#
# Needs perf, taskset and release binaries: BIN_DIR (default
# target/release) must hold echo-sigio, echo-epoll and echo-bench.
set -euo pipefail
cd "$(dirname "$0")/../.."
usage="usage: sigio-overflow.sh calls sigio|epoll [CONNS] [MESSAGES] [REPEAT] [SIGPENDING]
       sigio-overflow.sh cpu [CONNS] [MESSAGES] [REPEAT] [SIGPENDING] [IDLE]"
mode=${1:?$usage}
shift
case "$mode" in
  calls) model=${1:?$usage}; shift ;;
  cpu) model=sigio ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
conns=${1:-50}
messages=${2:-100000}
default_repeat=1
[ "$mode" = cpu ] && default_repeat=3
repeat=${3:-$default_repeat}
sigpending=${4:-default}
idle=${5:-0}
bin_dir=$(realpath "${BIN_DIR:-target/release}")
case "$model" in
  sigio) bin=echo-sigio ;;
  epoll) bin=echo-epoll ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
if [ "$sigpending" != default ] && ! [[ "$sigpending" =~ ^[0-9]+$ ]]; then
  echo "SIGPENDING must be a number or \"default\", not: $sigpending" >&2
  exit 2
fi
for tool in perf taskset "$bin_dir/$bin" "$bin_dir/echo-bench"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done
ulimit -n 20000

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The wrapper keeps the server's pid (exec), so echo-bench pins and
# measures the server itself; `ulimit -i` is bash's RLIMIT_SIGPENDING.
wrapper=$tmp/$bin
{
  echo '#!/usr/bin/env bash'
  [ "$sigpending" != default ] && echo "ulimit -S -H -i $sigpending || exit 1"
  echo "exec $bin_dir/$bin \"\$@\""
} >"$wrapper"
chmod +x "$wrapper"

if [ "$mode" = cpu ]; then
  echo "== echo-sigio, RLIMIT_SIGPENDING $sigpending: $conns connections ($idle idle besides), $messages echoes, $repeat runs"
  timeout 1200 "$bin_dir/echo-bench" run --bin "$wrapper" --conns "$conns" \
    --idle "$idle" --messages "$messages" --repeat "$repeat"
  exit 0
fi

# glibc's SIGRTMIN (the kernel's 32 and 33 are kept for its threads), the
# signal echo-sigio arms its sockets with; SIGIO is 29 on x86 and arm.
rt=34
sigio=29
summary=()
for rep in $(seq "$repeat"); do
  ready=$tmp/ready
  : >"$ready"
  taskset -c 0 "$wrapper" --addr 127.0.0.1:0 >"$ready" &
  server=$!
  for _ in $(seq 100); do
    grep -q '^listening on' "$ready" && break
    sleep 0.1
  done
  addr=$(sed -n 's/^listening on //p' "$ready")
  [ -n "$addr" ] || { echo "no readiness line" >&2; kill "$server"; exit 1; }

  # Result codes of signal_generate (include/trace/events/signal.h):
  # 0 delivered (queued), 2 already pending (a standard signal is pending
  # at most once), 3 overflow_fail (no room for the real-time signal).
  perf stat -x, -o "$tmp/sys" -p "$server" \
    -e raw_syscalls:sys_enter \
    -e syscalls:sys_enter_read \
    -e syscalls:sys_enter_recvfrom \
    -e syscalls:sys_exit_recvfrom --filter 'ret < 0' \
    -e syscalls:sys_enter_sendto \
    -e syscalls:sys_enter_poll \
    -e syscalls:sys_enter_epoll_wait \
    -e syscalls:sys_enter_fcntl \
    -e syscalls:sys_enter_rt_sigaction &
  perf_sys=$!
  perf stat -x, -o "$tmp/sig" -a \
    -e signal:signal_generate --filter "pid == $server && sig == $rt && result == 0" \
    -e signal:signal_generate --filter "pid == $server && sig == $rt && result == 3" \
    -e signal:signal_generate --filter "pid == $server && sig == $sigio && result == 0" \
    -e signal:signal_generate --filter "pid == $server && sig == $sigio && result == 2" &
  perf_sig=$!
  # perf needs a moment to attach; the load is long enough not to care
  # about a few missed calls at its start, and the script counts them
  # from the load's own figure of echoes, not from the calls.
  sleep 1

  # Every echoed byte is verified; a failed load fails the script.
  timeout 600 taskset -c 1 "$bin_dir/echo-bench" load --addr "$addr" \
    --conns "$conns" --size 64 --messages "$messages" >/dev/null

  kill -INT "$perf_sys" "$perf_sig"
  wait "$perf_sys" "$perf_sig" || true
  kill -TERM "$server"
  timeout 30 tail --pid="$server" -f /dev/null || true
  wait "$server" || true

  echo "== $model, run $rep: $conns connections, $messages echoes, RLIMIT_SIGPENDING $sigpending"
  grep '^[0-9<]' "$tmp/sys" "$tmp/sig" | sed 's/^[^:]*://'
  # Both files list their counts in the order of the -e options above.
  summary+=("$(cat "$tmp/sys" "$tmp/sig" | awk -F, -v m="$messages" -v model="$model" -v rep="$rep" '
    /^[0-9]/ { c[n++] = $1 }
    END {
      printf "%s run %d per echo:  syscalls %.3f  read %.3f  recvfrom %.3f (EAGAIN %.3f)  sendto %.3f  poll %.4f  epoll_wait %.4f  fcntl %d in all  rt_sigaction %d in all  |  RT signals queued %.3f, refused %.3f; SIGIO %d sent, %d already pending",
        model, rep, c[0] / m, c[1] / m, c[2] / m, c[3] / m, c[4] / m, c[5] / m, c[6] / m, c[7], c[8],
        c[9] / m, c[10] / m, c[11], c[12]
    }')")
done
echo
printf '%s\n' "${summary[@]}"
