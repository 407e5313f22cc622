//! The iterative echo server: accept one client, echo until it is done, then
//! accept the next. The baseline every other model is measured against.
//!
//! Run with `cargo run -p echo-iterative -- --addr 127.0.0.1:7000`, then
//! `nc 127.0.0.1 7000` in two terminals: the second one gets no echo until
//! the first one quits.
//!
//! # Syscalls
//!
//! `accept(2)`, then `read(2)` and `write(2)` on a blocking socket until
//! `read` returns 0, then `shutdown(2)` of the write side and `close(2)`.
//! Nothing else: no threads, no readiness API, no non-blocking mode. The
//! per-client loop is [`echo_protocol::echo_until_eof`], which every
//! blocking model shares: what this model adds is only the order in which
//! clients get to it.
//!
//! # Trade-offs
//!
//! Good at: being obviously correct. There is no shared state, no
//! scheduling, one buffer reused for every client, and memory use is
//! constant. With one short-lived client at a time it is as fast as anything.
//!
//! Where it breaks: head-of-line blocking. While one client is served,
//! every other one waits in the listen backlog. A client that stays
//! connected without sending, or sends without reading its echo (so our
//! `write` blocks once its receive window is full), stops the whole server.
//! Hence the conformance cases declared in [`MODEL`] as expected limits.
//! `--max-conns` is accepted for the common contract but is never reached:
//! one connection at a time is always under it.
//!
//! # What the benchmark shows
//!
//! With one connection, throughput and latency match the best models. With
//! `C` concurrent clients, throughput stays that of one client while latency
//! grows with `C`: a client's first echo waits for every client ahead of it
//! to disconnect. CPU stays below one core, however many clients wait.

#![warn(missing_docs)]

use std::io;
use std::net::TcpListener;

use echo_protocol::{Config, Model, NoFlags, accept_error_is_transient, echo_until_eof};

/// This model, as the contract sees it. Every expected limit is a case that
/// needs two clients to make progress at the same time: `beyond-fd-setsize`
/// wants 1,100 connections served while all are held open, and only the
/// first is. The cases with many clients that each finish on their own
/// (`interleaved`, `churn`, `reset-pending`) pass: each waits its turn in the
/// listen backlog, its bytes in the socket buffers. Of the faults,
/// `max-conns` is a limit for the same reason: it needs three clients served
/// at once before it can turn a fourth away.
pub const MODEL: Model = Model {
    name: "echo-iterative",
    expected_limits: &[
        "concurrent-200",
        "reset-isolation",
        "slow-reader",
        "idle-500",
        "beyond-fd-setsize",
        "max-conns",
    ],
};

/// Size of the one buffer every client is served through. Larger reads mean
/// fewer syscalls per byte; 16 KiB is past the point where that still helps
/// much on loopback.
pub const BUF_SIZE: usize = 16 * 1024;

/// Serves clients one after another until shutdown is requested.
///
/// Returns `Ok(())` after a shutdown request, and `Err` only when `accept`
/// fails in a way that retrying cannot fix.
pub fn serve(listener: TcpListener, config: &Config, _flags: NoFlags) -> io::Result<()> {
    let mut buf = vec![0u8; BUF_SIZE];
    // ANCHOR: accept-loop
    loop {
        let (mut stream, peer) = match listener.accept() {
            Ok((stream, peer)) => {
                // Nagle off, or a 64 KiB echo written 16 KiB at a time
                // waits for delayed ACKs: see `echo_protocol::no_delay`.
                echo_protocol::no_delay(&stream);
                (stream, peer)
            }
            // Out of descriptors or memory cannot happen to a server holding one
            // connection, so only the per-connection errors are retried.
            Err(e) if accept_error_is_transient(&e) => {
                config.log(format_args!("accept: {e} (retrying)"));
                continue;
            }
            Err(e) => return Err(e),
        };
        // The shutdown thread connects to us once after setting the flag, so
        // a blocked `accept` always returns and we get to look at it here.
        if config.shutdown.requested() {
            drop(stream);
            config.log(format_args!("shutdown requested: no longer accepting"));
            return Ok(());
        }
        config.log(format_args!("{peer}: connected"));
        // Everyone else waits in the listen backlog until this returns.
        match echo_until_eof(&mut stream, &mut buf) {
            Ok(bytes) => config.log(format_args!("{peer}: closed after {bytes} bytes")),
            // A reset or broken pipe ends this client only; the loop goes on.
            Err(e) => config.log(format_args!("{peer}: {e}")),
        }
    }
    // ANCHOR_END: accept-loop
}
