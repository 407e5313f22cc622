#!/usr/bin/env python3
"""The seeds' servers, kept as a yardstick: Python's socketserver with a
process per client (ForkingTCPServer) or a thread per client
(ThreadingTCPServer), speaking this project's echo protocol and server
contract so that `echo-bench run --bin` can measure them next to the Rust
models.

    echo-bench run --bin twins/socketserver_echo.py -- --mode forking
    echo-bench run --bin twins/socketserver_echo.py -- --mode threading

The handler is the seeds' (001: a `BaseRequestHandler` whose `handle` loops
on `recv(1024)` and `send`) with the three changes the protocol needs and
nothing else:

- it echoes the bytes instead of upper-casing them;
- it stops on `recv` returning b"" (the seed's loop spins there: `send(b"")`
  succeeds and `recv` returns b"" again, for ever);
- it uses `sendall`, because `send` may write part of the buffer and drop
  the rest.

socketserver does the half-close itself: after `handle` returns it calls
`shutdown(SHUT_WR)` and closes, so the client reads EOF after the last byte.

Two settings differ from the library's defaults, so that the comparison is
with the design rather than with a cap: ForkingTCPServer's `max_children`
(40, beyond which the parent blocks in `waitpid` until a child exits) is
raised so that every client gets its process at once, as in
echo-fork-per-client; the listen backlog (5) is raised to 1024, as in
every Rust model.

SIGINT/SIGTERM: stop accepting, let open connections finish within the
grace period (5 s, as echo-protocol's GRACE_PERIOD), exit 0.
"""

import argparse
import os
import signal
import socket
import socketserver
import sys
import threading
import time

GRACE_PERIOD = 5.0
BUFFER = 1024  # the seeds' recv size


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            try:
                data = self.request.recv(BUFFER)
            except OSError:  # reset by the client
                return
            if not data:
                return
            try:
                self.request.sendall(data)
            except OSError:  # the client went away
                return


class Forking(socketserver.ForkingTCPServer):
    allow_reuse_address = True
    request_queue_size = 1024
    max_children = 1 << 20
    # server_close() would wait for every child without a bound; the grace
    # period below bounds it instead.
    block_on_close = False


class Threading(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    request_queue_size = 1024
    # Not daemon threads: the grace period below waits for them, bounded.
    daemon_threads = False
    block_on_close = False


def parse_addr(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"invalid address {text!r}: expected HOST:PORT")
    return host, int(port)


def main():
    p = argparse.ArgumentParser(description="The seeds' socketserver echo, for comparison.")
    p.add_argument("--addr", type=parse_addr, default=("127.0.0.1", 7000))
    p.add_argument("--mode", choices=["forking", "threading"], required=True)
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()  # exits 2 with a usage line on bad input

    cls = Forking if args.mode == "forking" else Threading
    try:
        server = cls(args.addr, EchoHandler)
    except OSError as e:
        print(f"error: cannot listen on {args.addr[0]}:{args.addr[1]}: {e.strerror}", file=sys.stderr)
        return 1

    stop = threading.Event()
    # A child forked for a client inherits these handlers; it sets its own
    # copy of the event, which nobody waits on, and goes on serving: the
    # parent's grace period decides when it ends.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    host, port = server.server_address[:2]
    print(f"listening on {host}:{port}", flush=True)
    # serve_forever polls; shutdown() must come from another thread.
    loop = threading.Thread(target=server.serve_forever, name="accept")
    loop.start()
    while not stop.wait(0.5):
        pass
    server.shutdown()
    loop.join()
    server.socket.close()  # stop accepting: new clients are refused

    deadline = time.monotonic() + GRACE_PERIOD
    if args.mode == "forking":
        while server.active_children and time.monotonic() < deadline:
            server.collect_children()
            time.sleep(0.05)
        for pid in list(server.active_children or ()):
            os.kill(pid, signal.SIGKILL)
        server.collect_children()
    else:
        for t in threading.enumerate():
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))
        # Threads still open past the grace period end with the process.
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
