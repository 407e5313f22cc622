#!/usr/bin/env python3
"""The seeds' select server, kept as a yardstick for echo-select: one
thread, non-blocking sockets, `select.select(inputs, outputs, inputs)` with
an input list, an output list and a queue of pending data per client,
speaking this project's echo protocol and server contract so that
`echo-bench run --bin` can measure it next to the Rust models.

    echo-bench run --bin twins/select_echo.py --conns 50

The loop is the seeds' (000, "完整版": `inputs`, `outputs`,
`message_queues`, a client put in `outputs` only while it has data to send)
with the changes the protocol needs and nothing else:

- it echoes the bytes instead of upper-casing them, and prints nothing per
  event (the seed prints every receive and send, which would measure the
  terminal);
- on EOF it stops reading, sends what is queued, then half-closes and
  closes (the seed drops the queue and never closes the socket);
- it keeps what `send` did not take (the seed's `send` may drop the rest);
- it stops reading a client whose queue holds more than OUTPUT_CAP bytes
  (bounded memory per connection, as every Rust model);
- a connection whose descriptor is FD_SETSIZE (1024) or more is closed at
  once, since `select.select` refuses such descriptors (ValueError) and
  the whole loop would stop.

SIGINT/SIGTERM: stop accepting, let open connections finish within the
grace period (5 s, as echo-protocol's GRACE_PERIOD), exit 0.
"""

import argparse
import select
import signal
import socket
import sys
import time

GRACE_PERIOD = 5.0
BUFFER = 1024  # the seeds' recv size
OUTPUT_CAP = 1024 * 1024
FD_SETSIZE = 1024


def parse_addr(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"invalid address {text!r}: expected HOST:PORT")
    return host, int(port)


def main():
    p = argparse.ArgumentParser(description="The seeds' select echo server, for comparison.")
    p.add_argument("--addr", type=parse_addr, default=("127.0.0.1", 7000))
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()  # exits 2 with a usage line on bad input

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        server.bind(args.addr)
    except OSError as e:
        print(f"error: cannot listen on {args.addr[0]}:{args.addr[1]}: {e.strerror}", file=sys.stderr)
        return 1
    server.listen(1024)
    server.setblocking(False)

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))

    host, port = server.getsockname()[:2]
    print(f"listening on {host}:{port}", flush=True)

    inputs = [server]
    outputs = []
    message_queues = {}  # client -> bytearray of data not yet echoed
    closed_input = set()  # clients that half-closed
    deadline = None

    def finish(s):
        for lst in (inputs, outputs):
            if s in lst:
                lst.remove(s)
        message_queues.pop(s, None)
        closed_input.discard(s)
        s.close()

    while inputs or outputs:
        if stopping and deadline is None:
            deadline = time.monotonic() + GRACE_PERIOD
            inputs.remove(server)
            server.close()
        if deadline is not None and time.monotonic() > deadline:
            break
        # A bounded wait, so that a signal is noticed within half a second.
        try:
            readable, writeable, exceptional = select.select(inputs, outputs, inputs, 0.5)
        except InterruptedError:
            continue
        for s in readable:
            if s is server:
                try:
                    conn, _ = s.accept()
                except (BlockingIOError, ConnectionError):
                    continue
                except OSError:  # EMFILE and the like: serve who we have
                    continue
                if conn.fileno() >= FD_SETSIZE:
                    conn.close()
                    continue
                conn.setblocking(False)
                inputs.append(conn)
                message_queues[conn] = bytearray()
                continue
            try:
                data = s.recv(BUFFER)
            except BlockingIOError:
                continue
            except OSError:
                finish(s)
                continue
            if data:
                message_queues[s] += data
                if s not in outputs:
                    outputs.append(s)
                if len(message_queues[s]) > OUTPUT_CAP:
                    inputs.remove(s)  # back-pressure until the queue drains
            else:
                closed_input.add(s)
                inputs.remove(s)
                if not message_queues[s]:
                    s.shutdown(socket.SHUT_WR)
                    finish(s)
        for s in writeable:
            queue = message_queues.get(s)
            if queue is None:
                continue
            try:
                sent = s.send(queue)
            except BlockingIOError:
                continue
            except OSError:
                finish(s)
                continue
            del queue[:sent]
            if queue:
                continue
            outputs.remove(s)
            if s in closed_input:
                try:
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                finish(s)
            elif s not in inputs:
                inputs.append(s)  # drained: read again
        for s in exceptional:
            if s is not server and s in message_queues:
                finish(s)
        # A client stopped for back-pressure and drained above is back in
        # `inputs`; one that half-closed is in neither list until it is done.
    return 0


if __name__ == "__main__":
    sys.exit(main())
