//! Exercise `tokio-clear-ready`: a task per connection on tokio, each
//! socket in an `AsyncFd`; the task must tell tokio to forget a socket's
//! readiness when, and only when, the socket answered `EAGAIN`.
//!
//! Edit `src/starter.rs`; grade with `just exercise tokio-clear-ready`.
//! The `solution` feature builds `src/solution.rs` instead. This file is
//! the rest of the server (the runtime, the accept loop, shutdown), kept
//! short: no `--max-conns` and no `EMFILE` care here, see `echo-tokio`
//! for those.

#![warn(missing_docs)]

use std::io;
use std::net::TcpListener;
use std::sync::Arc;

use echo_protocol::nonblocking::{Accepted, Spare, accept_one};
use echo_protocol::{Config, NoFlags};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

#[cfg(not(feature = "solution"))]
#[path = "starter.rs"]
mod imp;
#[cfg(feature = "solution")]
#[path = "solution.rs"]
mod imp;

/// No expected limits: tasks, so no client waits for another.
pub const MODEL: echo_protocol::Model = echo_protocol::Model {
    name: "ex-tokio-clear-ready",
    expected_limits: &[],
};

/// Serves every client, a task each, on a current-thread runtime, until
/// shutdown is requested and the open connections have finished.
pub fn serve(listener: TcpListener, config: &Config, _flags: NoFlags) -> io::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?
        .block_on(accept_loop(listener, Arc::new(config.clone())))
}

async fn accept_loop(listener: TcpListener, config: Arc<Config>) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    // SAFETY: the `AsyncFd` owns the listener, whose descriptor stays open
    // and the same until the `AsyncFd` is dropped.
    let listener = unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE)? };
    // SAFETY: a `BorrowedFd` is open for its whole lifetime, which the
    // `AsyncFd` holding it cannot outlive.
    let shutdown =
        unsafe { AsyncFd::register_with_interest(config.shutdown.fd(), Interest::READABLE)? };
    let mut spare = Spare::new()?;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let mut guard = tokio::select! {
            biased;
            _ = shutdown.readable() => break,
            guard = listener.readable() => guard?,
        };
        match accept_one(guard.get_inner(), &mut spare) {
            Accepted::Client(stream, peer) => {
                stream.set_nonblocking(true)?;
                // SAFETY: the `AsyncFd` owns the stream, whose descriptor
                // stays open and the same until the task drops it.
                let socket = unsafe { AsyncFd::register(stream)? };
                let config = Arc::clone(&config);
                tasks.spawn(async move {
                    match imp::echo(socket).await {
                        Ok(n) => config.log(format_args!("{peer}: closed after {n} bytes")),
                        Err(e) => config.log(format_args!("{peer}: {e}")),
                    }
                });
            }
            // Only `EAGAIN` says the backlog is empty: the same rule as
            // the one this exercise is about, for the listener.
            Accepted::Empty => guard.clear_ready(),
            Accepted::Skipped(e) | Accepted::Later(e) => config.log(format_args!("accept: {e}")),
        }
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
    Ok(())
}
