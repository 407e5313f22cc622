#!/usr/bin/env bash
# What a fork server that neither reaps nor closes its copy of each client
# looks like from outside: the `fork-reaper` exercise's starter.
#
#   bash scripts/measure/fork-per-client-leaks.sh [--solution]
#
# Starts the exercise's server (the starter, or with --solution the
# reference solution), runs one client that half-closes and waits 3 s for
# EOF, then 99 short clients (send a byte, read it back, close), and
# prints the parent's descriptor count, the server-side sockets left in
# CLOSE-WAIT (the client closed, the server side never did) and the
# zombie children.
set -euo pipefail
cd "$(dirname "$0")/../.."
ulimit -n 20000

features=()
[ "${1:-}" = --solution ] && features=(--features solution)
cargo build -q -p ex-fork-reaper "${features[@]}"
out=$(mktemp)
target/debug/ex-fork-reaper --addr 127.0.0.1:0 >"$out" &
server=$!
trap 'kill -TERM $server 2>/dev/null; rm -f "$out"' EXIT
addr=""
for _ in $(seq 100); do
  addr=$(sed -n 's/^listening on //p' "$out")
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "the server did not start" >&2; exit 1; }
port=${addr##*:}

echo "parent's descriptors before: $(ls /proc/$server/fd | wc -l)"
python3 - "$port" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"hello\n")
s.shutdown(socket.SHUT_WR)
s.settimeout(3)
got, start = b"", time.monotonic()
try:
    while True:
        chunk = s.recv(100)
        if not chunk:
            print(f"client 1: echoed {got!r}, EOF after {time.monotonic() - start:.3f} s")
            break
        got += chunk
except socket.timeout:
    print(f"client 1: echoed {got!r}, then no EOF within 3 s")
for _ in range(99):
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(b"x")
        assert c.recv(1) == b"x"
PY
sleep 0.5
echo "parent's descriptors after 100 clients: $(ls /proc/$server/fd | wc -l)"
echo "server-side sockets in CLOSE-WAIT: $(ss -tnH state close-wait "( sport = :$port )" | wc -l)"
echo "zombie children: $(ps --ppid $server -o stat= | grep -c Z || true)"
