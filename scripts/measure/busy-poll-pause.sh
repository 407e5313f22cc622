#!/usr/bin/env bash
# echo-busy-poll's pause (--idle-sleep-us) traded against CPU and latency,
# in one session: one client, first at a low open-loop rate (100 msgs/s,
# a message every 10 ms, so that nearly every sweep finds nothing), then
# closed loop (the next message comes as soon as the echo is back), each
# for pauses of 0 (a pure spin), 10, 100, 1000 (the default) and 10000 µs,
# with echo-epoll under the same two loads as the yardstick of a server
# that sleeps until the kernel wakes it.
#
#   bash scripts/measure/busy-poll-pause.sh [LOG]
#
# LOG (default: standard output) gets every run's full output, then a
# summary table with a row per run (CPU share = server CPU seconds / the
# load's window; sleeps = voluntary context switches of the server, which
# a busy-poll loop makes only in its pause). BIN is the directory holding echo-bench and the echo-* binaries
# (default target/release; build with cargo build --release --workspace --bins).
set -uo pipefail
cd "$(dirname "$0")/../.."
ulimit -n 20000
log=${1:-/dev/stdout}
bench=${BIN:-target/release}/echo-bench
pauses=(0 10 100 1000 10000)
raw=$(mktemp)
trap 'rm -f "$raw"' EXIT

one() {
  echo "## echo-bench run $*"
  timeout 600 "$bench" run "$@" 2>&1
  echo "exit status: $?"
}

{
  date -u '+# %Y-%m-%d %H:%M:%S UTC'
  lscpu | grep 'Model name'
  echo "cores: $(nproc)"
  for n in "${pauses[@]}"; do
    one busy-poll --conns 1 --rate 100 --duration 5 --repeat 3 -- --idle-sleep-us "$n"
  done
  one epoll --conns 1 --rate 100 --duration 5 --repeat 3
  for n in "${pauses[@]}"; do
    one busy-poll --conns 1 --duration 3 --repeat 3 -- --idle-sleep-us "$n"
  done
  one epoll --conns 1 --duration 3 --repeat 3
} >"$raw"

python3 - "$raw" >>"$raw" <<'PY'
import re, sys

runs, cur = [], None
for line in open(sys.argv[1]):
    if line.startswith("## echo-bench run "):
        cur = {"cmd": line[len("## echo-bench run "):].strip(), "reps": []}
        runs.append(cur)
        continue
    if cur is None:
        continue
    m = re.search(r"(\d+) msgs in ([\d.]+) s = (\d+) msgs/s", line)
    if m:
        cur["reps"].append({"msgs": int(m[1]), "secs": float(m[2]), "rate": int(m[3])})
        continue
    m = re.search(r"latency µs p50 (\d+) p90 \d+ p99 (\d+) p99.9 \d+ max (\d+); errors (\S+)", line)
    if m and cur["reps"]:
        cur["reps"][-1].update(p50=int(m[1]), p99=int(m[2]), max=int(m[3]), errors=m[4])
        continue
    m = re.search(r"cpu ([\d.]+) s .* = ([\d.]+) µs per echo; ctx switches (\d+) voluntary / (\d+) involuntary", line)
    if m and cur["reps"]:
        cur["reps"][-1].update(cpu=float(m[1]), per_echo=float(m[2]), vol=int(m[3]), invol=int(m[4]))

def span(xs, fmt):
    lo, hi = min(xs), max(xs)
    return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else fmt.format(lo) + "–" + fmt.format(hi)

print("\n# summary: ranges over the repetitions")
print("| command | msgs/s | server CPU share | CPU µs/echo | sleeps (vol. ctx) per echo | p50 µs | p99 µs | max µs | errors |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in runs:
    reps = [x for x in r["reps"] if "cpu" in x and "p50" in x]
    if not reps:
        print(f"| `{r['cmd']}` | no complete repetition |||||||")
        continue
    print("| `{}` | {} | {} | {} | {} | {} | {} | {} | {} |".format(
        r["cmd"],
        span([x["rate"] for x in reps], "{:,}"),
        span([x["cpu"] / x["secs"] * 100 for x in reps], "{:.1f} %"),
        span([x["per_echo"] for x in reps], "{:.1f}"),
        span([x["vol"] / x["msgs"] for x in reps], "{:.2f}"),
        span([x["p50"] for x in reps], "{:,}"),
        span([x["p99"] for x in reps], "{:,}"),
        span([x["max"] for x in reps], "{:,}"),
        ",".join(sorted({x["errors"] for x in reps})),
    ))
PY
cat "$raw" >>"$log"
