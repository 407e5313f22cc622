#!/usr/bin/env python3
"""The seeds' selectors server, kept as a yardstick for echo-mio: one
thread, non-blocking sockets, `selectors.DefaultSelector` (epoll on Linux)
and a callback stored with each registration, speaking this project's echo
protocol and server contract so that `echo-bench run --bin` can measure it
next to the Rust models.

    echo-bench run --bin twins/selectors_echo.py --conns 50

The loop is the seeds' (000 §5 and 003: `sel.register(sock, EVENT_READ,
accept)`, an `accept` callback that registers each connection with a
`read` callback, and a loop that calls `key.data(key.fileobj, mask)` for
every ready key), with the changes the protocol needs and nothing else:

- it echoes the bytes instead of upper-casing them (003 also appends
  `_SB`), and prints nothing per event (the seed prints every accept and
  every echo, which would measure the terminal);
- it keeps what `send` did not take (the seed's comment, "Hope it won't
  block", is the bug: a full socket buffer drops the rest), in a queue per
  connection, and asks for EVENT_WRITE only while that queue is not empty,
  as the seeds' select server does with its output list;
- it stops reading a client whose queue holds more than OUTPUT_CAP bytes,
  until the queue drains (bounded memory per connection, as every Rust
  model): `sel.modify` to EVENT_WRITE alone;
- on EOF it sends what is queued, then half-closes and closes (the seed
  closes at once, dropping what was not yet sent);
- a reset or any other error on one connection closes that connection
  only (the seed in 000 lets the exception end the server);
- out of descriptors (EMFILE), it accepts with a spare descriptor and
  closes the client at once, as echo-mio does: the seed's `accept` would
  raise, and ignoring the error instead would spin, since the listener
  stays readable while the client waits in the backlog;
- the listen backlog is 1024 (000 has 5000, 003 has 5) and the address
  comes from `--addr`, port 0 allowed, as every Rust model.

Unlike the seeds' select server it has no descriptor ceiling: epoll takes
any descriptor, so it can run the 10,000-connection scenarios, as echo-mio
does.

SIGINT/SIGTERM: stop accepting, let open connections finish within the
grace period (5 s, as echo-protocol's GRACE_PERIOD), exit 0. The signal
handler only sets a flag; `signal.set_wakeup_fd` writes to a socket pair
registered with the selector, so the loop wakes at once instead of
polling on a timeout.
"""

import argparse
import errno
import os
import selectors
import signal
import socket
import sys
import time

GRACE_PERIOD = 5.0
BUFFER = 1024  # the seeds' recv size
OUTPUT_CAP = 1024 * 1024

sel = selectors.DefaultSelector()
queues = {}  # connection -> bytearray of data not yet echoed
half_closed = set()  # connections whose client sent EOF
stopping = []
spare = open(os.devnull, "rb")  # a descriptor held back for EMFILE


def parse_addr(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"invalid address {text!r}: expected HOST:PORT")
    return host, int(port)


def accept(sock, mask):
    global spare
    try:
        conn, _ = sock.accept()
    except (BlockingIOError, ConnectionError):
        return
    except OSError as e:
        if e.errno not in (errno.EMFILE, errno.ENFILE):
            return
        # Out of descriptors: the client stays in the backlog and the
        # listener stays readable, so returning here would spin. Free the
        # spare, accept and close the client at once (it sees EOF), take
        # the spare back: as echo-mio does.
        spare.close()
        try:
            sock.accept()[0].close()
        except OSError:
            pass
        spare = open(os.devnull, "rb")
        return
    conn.setblocking(False)
    queues[conn] = bytearray()
    sel.register(conn, selectors.EVENT_READ, echo)


def close(conn):
    sel.unregister(conn)
    queues.pop(conn, None)
    half_closed.discard(conn)
    conn.close()


def echo(conn, mask):
    """The seed's `read` callback, and its missing `write` half."""
    try:
        if mask & selectors.EVENT_READ:
            read(conn)
        if conn in queues and mask & selectors.EVENT_WRITE:
            write(conn)
    except OSError:  # reset by the client, or gone
        if conn in queues:
            close(conn)


def read(conn):
    try:
        data = conn.recv(BUFFER)
    except BlockingIOError:
        return
    queue = queues[conn]
    if not data:
        half_closed.add(conn)
        if queue:
            sel.modify(conn, selectors.EVENT_WRITE, echo)  # flush, then close
        else:
            conn.shutdown(socket.SHUT_WR)
            close(conn)
        return
    if not queue:
        # The seed's `conn.send(data)`, keeping what it did not take.
        try:
            sent = conn.send(data)
        except BlockingIOError:
            sent = 0
        data = data[sent:]
        if not data:
            return
    queue += data
    if len(queue) > OUTPUT_CAP:
        sel.modify(conn, selectors.EVENT_WRITE, echo)  # back-pressure
    else:
        sel.modify(conn, selectors.EVENT_READ | selectors.EVENT_WRITE, echo)


def write(conn):
    queue = queues[conn]
    try:
        sent = conn.send(queue)
    except BlockingIOError:
        return
    del queue[:sent]
    if queue:
        if conn not in half_closed and len(queue) <= OUTPUT_CAP:
            sel.modify(conn, selectors.EVENT_READ | selectors.EVENT_WRITE, echo)
        return
    if conn in half_closed:
        conn.shutdown(socket.SHUT_WR)
        close(conn)
    else:
        sel.modify(conn, selectors.EVENT_READ, echo)  # drained: read again


def woken(sock, mask):
    try:
        sock.recv(64)  # the signal numbers set_wakeup_fd wrote
    except BlockingIOError:
        pass


def main():
    p = argparse.ArgumentParser(description="The seeds' selectors echo server, for comparison.")
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
    sel.register(server, selectors.EVENT_READ, accept)

    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno())
    sel.register(wake_r, selectors.EVENT_READ, woken)
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))

    host, port = server.getsockname()[:2]
    print(f"listening on {host}:{port}", flush=True)

    deadline = None
    while True:
        if stopping and deadline is None:
            deadline = time.monotonic() + GRACE_PERIOD
            sel.unregister(server)
            server.close()
        timeout = None
        if deadline is not None:
            timeout = deadline - time.monotonic()
            if not queues or timeout <= 0:
                break
        for key, mask in sel.select(timeout):
            callback = key.data
            callback(key.fileobj, mask)
    return 0


if __name__ == "__main__":
    sys.exit(main())
