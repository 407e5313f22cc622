//! TASK: make this task forget its socket's readiness only when the
//! socket said so.
//!
//! The socket is a non-blocking std `TcpStream` in tokio's `AsyncFd`.
//! `socket.ready(interest).await` returns a guard as soon as tokio believes
//! the socket ready, and tokio believes so from the moment an epoll event
//! (edge-triggered) said it until *you* call `clear_ready` on a guard. The
//! bytes move through the shared `Echo`: one read into the pending output
//! (no further than `OUTPUT_CAP` unsent: [`Echo::wants_read`] turns false),
//! then write until the socket is full. That part is right.
//!
//! The bug: after each turn the task clears all readiness, as if the
//! event were "handled". But a read that filled the whole buffer has left
//! bytes in the socket, and no new event will announce them: they arrived
//! already. The task then waits for an edge that never comes. A client
//! that sends a few MiB before it reads, stopped at the cap, never gets
//! the rest of its echo.
//!
//! Fix `echo` so that readiness is forgotten only when the socket answered
//! `EAGAIN`, one direction at a time.
//!
//! Edit this file only. Grade with `just exercise tokio-clear-ready` (or
//! `bash scripts/exercise.sh tokio-clear-ready`).
//!
//! Syscalls (through tokio and mio): `epoll_ctl(2)`, `epoll_wait(2)`,
//! `read(2)`, `write(2)`, `shutdown(2)`.

use std::cell::RefCell;
use std::io;
use std::net::{Shutdown, TcpStream};

use echo_protocol::nonblocking::{Echo, READ_CHUNK};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

thread_local! {
    /// One read buffer per thread: no `.await` while it is borrowed.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// One connection: wait, read once, write until full, until the client has
/// half-closed and all is written back; then half-close.
pub(crate) async fn echo(socket: AsyncFd<TcpStream>) -> io::Result<u64> {
    let mut echo = Echo::new();
    loop {
        let interest = match (echo.wants_read(), echo.wants_write()) {
            (true, true) => Interest::READABLE | Interest::WRITABLE,
            (true, false) => Interest::READABLE,
            (false, true) => Interest::WRITABLE,
            (false, false) => break,
        };
        let mut guard = socket.ready(interest).await?;
        if echo.wants_read() && guard.ready().is_readable() {
            SCRATCH.with_borrow_mut(|scratch| echo.read_from(&mut guard.get_inner(), scratch))?;
        }
        if echo.wants_write() {
            echo.flush_to(&mut guard.get_inner())?;
        }
        // Event handled.
        guard.clear_ready();
    }
    socket.into_inner().shutdown(Shutdown::Write)?;
    Ok(echo.echoed())
}
