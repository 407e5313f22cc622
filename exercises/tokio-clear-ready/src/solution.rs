//! Reference solution of `tokio-clear-ready`: readiness is forgotten one
//! direction at a time, and only when the socket has answered `EAGAIN`
//! (or a short read has shown it empty).

use std::cell::RefCell;
use std::io;
use std::net::{Shutdown, TcpStream};

use echo_protocol::nonblocking::{Echo, READ_CHUNK, Read};
use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, Ready};

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
            let read = SCRATCH
                .with_borrow_mut(|scratch| echo.read_from(&mut guard.get_inner(), scratch))?;
            match read {
                // A full buffer: more may be waiting, and no edge will say
                // so. Keep the readiness; the next `ready()` returns at once.
                Read::Data(n) if n == READ_CHUNK => {}
                // Empty now: the next bytes bring a new edge.
                Read::Data(_) | Read::WouldBlock => guard.clear_ready_matching(Ready::READABLE),
                // Nothing more will come; `wants_read` is false from now on.
                Read::Eof => {}
            }
        }
        if echo.wants_write() {
            echo.flush_to(&mut guard.get_inner())?;
            if echo.wants_write() {
                // The socket is full: freed space brings a new edge.
                guard.clear_ready_matching(Ready::WRITABLE);
            }
        }
    }
    socket.into_inner().shutdown(Shutdown::Write)?;
    Ok(echo.echoed())
}
