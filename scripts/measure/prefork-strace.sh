#!/usr/bin/env bash
# The system calls of echo-prefork for one hand-off, counted by strace over
# the whole process tree: one connection carrying 20,000 echoes of 64 bytes
# (the per-echo calls), then 1,000 short connections one after another (the
# per-connection calls of the hand-off).
#
#   bash scripts/measure/prefork-strace.sh shared-accept|reuseport|pass-fd [WORKERS]
#
# Needs strace and a release build (cargo build --release --workspace --bins).
# Prints strace's -c table (summed over every process, -f).
set -euo pipefail
cd "$(dirname "$0")/../.."
handoff=${1:?usage: prefork-strace.sh shared-accept|reuseport|pass-fd [WORKERS]}
workers=${2:-2}
out=$(mktemp)
ready=$(mktemp)
trap 'rm -f "$out" "$ready"' EXIT

strace -f -c -o "$out" target/release/echo-prefork --addr 127.0.0.1:0 \
  --workers "$workers" --handoff "$handoff" >"$ready" &
tracer=$!
# The readiness line carries the port; wait for it, bounded.
for _ in $(seq 100); do
  grep -q '^listening on' "$ready" && break
  sleep 0.1
done
addr=$(sed -n 's/^listening on //p' "$ready")
[ -n "$addr" ] || { echo "no readiness line" >&2; kill "$tracer"; exit 1; }

timeout 120 target/release/echo-bench load --addr "$addr" --conns 1 --size 64 --messages 20000 >/dev/null
timeout 120 python3 - "$addr" <<'PY'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
for _ in range(1000):
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"x")
        assert s.recv(1) == b"x"
        s.shutdown(socket.SHUT_WR)
        assert s.recv(1) == b""
PY
# SIGTERM to the server (strace's child), not to strace: the server drains
# and exits 0, and strace then writes its table.
server=$(pgrep -P "$tracer" -x echo-prefork | head -n 1)
kill -TERM "$server"
timeout 30 tail --pid="$tracer" -f /dev/null || true
wait "$tracer" || true
cat "$out"
