//! `broken-close-on-eof`: a non-blocking `poll(2)` echo server that closes
//! a connection as soon as `read` returns 0, throwing away the output it
//! still holds for it.
//!
//! The bug, as it looks in real code: the EOF arm of the read handler
//! does what the blocking version did (`break`, then close), but here the
//! echo of the last bytes may still sit in the connection's output queue,
//! waiting for `POLLOUT`. Correct: note the EOF, stop reading, flush the
//! queue, then `shutdown(SHUT_WR)` and close.
//!
//! Caught by `half-close`: its clients write conversations of growing size
//! and half-close before reading a byte, so one of them ends while the
//! kernel's send buffer is full and the queue holds the rest; the client
//! sees the stream cut short (at 3.75 MiB on this machine's loopback
//! buffers). The other cases miss it: their clients read while they
//! write, or half-close only after reading their echo (`churn`), so
//! nothing is queued in user space at EOF.
//!
//! Syscalls: `poll(2)`, non-blocking `accept4(2)`, `read(2)`, `write(2)`.

use std::io;
use std::net::TcpListener;
use std::process::ExitCode;

use echo_protocol::{Config, NoFlags};
use test_servers::model;
use test_servers::poll_loop::{Conn, OUTPUT_CAP, poll_loop};

fn main() -> ExitCode {
    echo_protocol::run(&model("broken-close-on-eof"), serve)
}

fn serve(listener: TcpListener, config: &Config, _: NoFlags) -> io::Result<()> {
    // A connection's error closes that connection only.
    poll_loop(listener, config, Conn::interest, |c, buf| {
        Ok(handle(c, buf).unwrap_or(false))
    })
}

/// Reads once if there is room, flushes what it can; `Ok(false)` to close.
fn handle(c: &mut Conn, buf: &mut [u8]) -> io::Result<bool> {
    if c.out.len() < OUTPUT_CAP {
        c.read_once(buf)?;
        // THE BUG: the client is done sending, but not necessarily done
        // receiving; whatever is still in `c.out` is dropped with it.
        if c.eof {
            return Ok(false);
        }
    }
    c.flush()?;
    Ok(true)
}
