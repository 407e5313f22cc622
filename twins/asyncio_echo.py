#!/usr/bin/env python3
"""The asyncio echo server, the Python twin of echo-tokio: a task per
connection, written as straight-line code with `await` wherever a blocking
server would block, on asyncio's event loop (a selector loop, so epoll on
Linux). It speaks this project's echo protocol and server contract so that
`echo-bench run --bin` can measure it next to the Rust models.

    echo-bench run --bin twins/asyncio_echo.py --conns 50

The seeds name asyncio as "the most efficient model" (001 §5.4, 002 §4)
and build up to it in 003 (epoll, callbacks, Future, Task, `yield from`,
then `async`/`await`), but give no asyncio server; 003's only asyncio code
is a client (`@asyncio.coroutine`, `loop.run_until_complete`). This one
keeps their shape, one coroutine per connection, and writes it in today's
spelling: `async def`, `asyncio.start_server` with a StreamReader and a
StreamWriter per connection, `asyncio.run`. What the protocol needs:

- `await reader.read(READ_CHUNK)` returns b"" on EOF; the handler then
  sends EOF back (`write_eof`, a half-close) after the last echoed byte;
- `writer.write(data)` only queues the bytes in the transport, and
  `await writer.drain()` waits while more than 64 KiB (asyncio's
  high-water mark) is queued. That is the back-pressure: a client that
  does not read stops its own handler, which stops reading, and once the
  StreamReader holds twice its limit (64 KiB) the transport stops reading
  the socket too. Memory per connection is bounded by those two buffers,
  as echo-tokio's by OUTPUT_CAP; a `write` without `drain` would queue
  without bound;
- a reset ends that handler only (ConnectionError); the others go on;
- the listen backlog is 1024 (asyncio's default is 100) and the address
  comes from `--addr`, port 0 allowed, as every Rust model.

Next to echo-tokio, what is the same: the event loop owns the sockets and
the readiness, a waiting task costs no thread, and anything slow between
two `await`s stalls every connection. What differs: asyncio reads into a
fresh bytes object per `recv` (up to 256 KiB) and copies it through the
StreamReader's buffer, where echo-tokio reads into one scratch buffer per
thread and keeps nothing per idle connection but its task; asyncio runs on
one thread only; and each `await` goes through Python's interpreter, so
the per-echo CPU, not the design, is what separates the two in a
benchmark. Out of descriptors (EMFILE), both shed the waiting client with
a spare descriptor (here in the loop's exception handler, see
`shed_on_emfile`, because asyncio's own answer spins).

The listening socket is made here and handed to `start_server(sock=...)`
rather than letting `start_server` bind it, so that the exception handler
can reach it.

SIGINT/SIGTERM: stop accepting, let open connections finish within the
grace period (5 s, as echo-protocol's GRACE_PERIOD), exit 0.
"""

import argparse
import asyncio
import errno
import os
import signal
import socket
import sys

GRACE_PERIOD = 5.0
READ_CHUNK = 64 * 1024  # as echo-tokio's READ_CHUNK

tasks = set()  # one per open connection, for the grace period


def parse_addr(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"invalid address {text!r}: expected HOST:PORT")
    return host, int(port)


async def echo(reader, writer):
    task = asyncio.current_task()
    tasks.add(task)
    try:
        while True:
            data = await reader.read(READ_CHUNK)
            if not data:  # the client half-closed
                break
            writer.write(data)
            await writer.drain()
        writer.write_eof()
    except (ConnectionError, OSError):  # reset by the client, or gone
        pass
    finally:
        writer.close()
        tasks.discard(task)


def shed_on_emfile(listener, verbose):
    """An exception handler for the loop: on EMFILE from accept, take the
    waiting client with the spare descriptor and close it at once (it sees
    EOF), as echo-mio does; anything else goes to asyncio's default.

    Needed because asyncio's own answer to EMFILE (stop accepting for a
    second) does not leave its accept loop: it retries `accept` up to
    `backlog` times in the same turn, each failure scheduling another
    restart, and spins (CPython issue 151615, present in 3.11). Shedding
    makes each retry take one client off the backlog, so the loop ends
    when the backlog is empty.
    """
    spare = [open(os.devnull, "rb")]

    def handler(loop, context):
        err = context.get("exception")
        if not (isinstance(err, OSError) and err.errno in (errno.EMFILE, errno.ENFILE)):
            loop.default_exception_handler(context)
            return
        spare[0].close()
        try:
            listener.accept()[0].close()
        except OSError:
            pass
        spare[0] = open(os.devnull, "rb")
        if verbose:
            print(f"accept: {err.strerror}: closed a waiting client", file=sys.stderr)

    return handler


async def serve(host, port, verbose):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as e:
        print(f"error: cannot listen on {host}:{port}: {e.strerror}", file=sys.stderr)
        return 1
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(shed_on_emfile(listener, verbose))
    server = await asyncio.start_server(echo, sock=listener, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    bound = server.sockets[0].getsockname()
    print(f"listening on {bound[0]}:{bound[1]}", flush=True)

    await stop.wait()
    server.close()  # stops accepting; open connections go on
    if tasks:
        await asyncio.wait(set(tasks), timeout=GRACE_PERIOD)
    return 0


def main():
    p = argparse.ArgumentParser(description="An asyncio echo server, the twin of echo-tokio.")
    p.add_argument("--addr", type=parse_addr, default=("127.0.0.1", 7000))
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()  # exits 2 with a usage line on bad input
    return asyncio.run(serve(*args.addr, args.verbose))


if __name__ == "__main__":
    sys.exit(main())
