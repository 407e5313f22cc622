//! `broken-error-propagation`: a non-blocking `poll(2)` echo server that
//! lets a per-connection error escape its event loop.
//!
//! The bug, as it looks in real code: the connection handler returns
//! `io::Result`, and the loop calls it with `?`, the idiom that is right
//! everywhere else in the function. A reset client makes `read` or `write`
//! fail with `ECONNRESET` or `EPIPE`, `serve` returns the error, and the
//! process exits 1 with every other client. Correct: log the error, close
//! that connection, carry on.
//!
//! Caught by `reset-isolation`: client B resets with its echo unread while
//! A is connected; A's next round trip finds the server gone, and the
//! suite's liveness check names the exit. `reset-pending`, `churn` and
//! `reset-before-accept` catch it too; the other cases never reset.
//!
//! Syscalls: `poll(2)`, non-blocking `accept4(2)`, `read(2)`, `write(2)`.

use std::io;
use std::net::TcpListener;
use std::process::ExitCode;

use echo_protocol::{Config, NoFlags};
use test_servers::model;
use test_servers::poll_loop::{Conn, poll_loop};

fn main() -> ExitCode {
    echo_protocol::run(&model("broken-error-propagation"), serve)
}

fn serve(listener: TcpListener, config: &Config, _: NoFlags) -> io::Result<()> {
    // THE BUG: the handler's `Err` goes to `poll_loop` as it is, which
    // returns it: one client's ECONNRESET goes up through `serve` and out
    // of `main`, and every client goes with it. Correct:
    // `Ok(c.echo_ready(buf).unwrap_or(false))`, closing that one.
    poll_loop(listener, config, Conn::interest, |c, buf| c.echo_ready(buf))
}
