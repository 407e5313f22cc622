//! `broken-unbounded-buffer`: a non-blocking `poll(2)` echo server that
//! reads whatever a client sends, whether or not the client reads its
//! echo, and queues the unsent echo in a `Vec` without limit.
//!
//! The bug, as it looks in real code: the poll set always asks for
//! `POLLIN`. Everything else is right (partial writes queued, `POLLOUT`
//! while output waits, EOF handled after the queue drains), so every
//! client that reads its echo is served perfectly. Correct: stop asking
//! for `POLLIN` while a connection's queue is over a cap, so the kernel's
//! buffers fill and the client's writes block.
//!
//! Caught by `slow-reader`: client S offers 256 MiB and reads nothing; this
//! server's memory grows with it and the PSS bound (64 MiB) trips within a
//! second. The other cases miss it: every other client reads while it
//! writes, or writes less than the kernel buffers hold (`reset-pending`
//! resets before the growth is measured).
//!
//! Syscalls: `poll(2)`, non-blocking `accept4(2)`, `read(2)`, `write(2)`.

use std::io;
use std::net::TcpListener;
use std::process::ExitCode;

use echo_protocol::{Config, NoFlags};
use nix::poll::PollFlags;
use test_servers::model;
use test_servers::poll_loop::{Conn, poll_loop};

fn main() -> ExitCode {
    echo_protocol::run(&model("broken-unbounded-buffer"), serve)
}

fn serve(listener: TcpListener, config: &Config, _: NoFlags) -> io::Result<()> {
    // A connection's error closes that connection only.
    poll_loop(listener, config, interest, |c, buf| {
        Ok(handle(c, buf).unwrap_or(false))
    })
}

fn interest(c: &Conn) -> PollFlags {
    // THE BUG: always interested in input, however much output is waiting
    // for this client (`Conn::interest` stops at `OUTPUT_CAP`).
    let mut ev = if c.eof {
        PollFlags::empty()
    } else {
        PollFlags::POLLIN
    };
    if !c.out.is_empty() {
        ev |= PollFlags::POLLOUT;
    }
    ev
}

/// Reads once, flushes what it can; `Ok(false)` to close.
fn handle(c: &mut Conn, buf: &mut [u8]) -> io::Result<bool> {
    if !c.eof {
        // Never full: a Vec grows (doubling) as long as there is memory.
        c.read_once(buf)?;
    }
    c.flush()?;
    Ok(c.keep_open())
}
