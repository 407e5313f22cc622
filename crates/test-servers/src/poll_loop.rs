//! The non-blocking readiness loop of the `poll(2)` and `select(2)` test
//! servers: a table of connections, each with an output queue; one
//! readiness call per turn; one read and as much writing as the socket
//! takes per ready connection; then every connection waiting to be
//! accepted.
//!
//! Written once so that each of those servers shows only what it gets
//! wrong: which events it asks for (`interest`), what it does with a ready
//! connection (`handle`), and what it does with that handler's errors.
//! [`Conn`]'s methods are the correct pieces; a server with a bug in one
//! of them writes that piece itself.
//!
//! Trade-offs: the poll set is rebuilt on every turn (O(n) per wake-up,
//! where epoll would not be), and the connection table is a `Vec` whose
//! positions match the poll set's; both keep the loop short and are
//! irrelevant at the sizes the cases reach.
//!
//! Syscalls: `poll(2)`, non-blocking `accept4(2)`, `read(2)`, `write(2)`,
//! `shutdown(2)`.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;

use echo_protocol::{Config, accept_error_is_transient};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// Output kept per connection before we stop reading from it: past it, the
/// kernel's buffers fill and the client's writes block (back-pressure),
/// instead of our memory growing with a client that does not read.
pub const OUTPUT_CAP: usize = 256 * 1024;

/// One connection: its non-blocking socket, the echo not yet written, and
/// whether the client has half-closed.
pub struct Conn {
    /// The client's socket, non-blocking.
    pub stream: TcpStream,
    /// Bytes read but not yet written back, oldest first.
    pub out: Vec<u8>,
    /// `read` returned 0: nothing more will come, but `out` may still hold
    /// echo owed to the client.
    pub eof: bool,
}

impl Conn {
    /// The events a correct server asks for: input while the client may
    /// still send and the queue is under [`OUTPUT_CAP`], output while
    /// anything is queued.
    pub fn interest(&self) -> PollFlags {
        let mut ev = PollFlags::empty();
        if !self.eof && self.out.len() < OUTPUT_CAP {
            ev |= PollFlags::POLLIN;
        }
        if !self.out.is_empty() {
            ev |= PollFlags::POLLOUT;
        }
        ev
    }

    /// One `read` into the queue; sets `eof` on 0. One per wake-up, not
    /// until `EAGAIN`: with level-triggered readiness, what is left is
    /// reported again on the next turn, and one client cannot starve the
    /// others.
    pub fn read_once(&mut self, buf: &mut [u8]) -> io::Result<()> {
        match self.stream.read(buf) {
            Ok(0) => self.eof = true,
            Ok(n) => self.out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Writes from the queue until it is empty or the socket is full.
    pub fn flush(&mut self) -> io::Result<()> {
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// False once the client has half-closed and all its echo is written;
    /// then our side is half-closed too, so the client reads EOF after the
    /// last byte rather than a reset.
    pub fn keep_open(&mut self) -> bool {
        if self.eof && self.out.is_empty() {
            let _ = self.stream.shutdown(Shutdown::Write);
            return false;
        }
        true
    }

    /// The correct handler: read once if there is room, flush what the
    /// socket takes; `Ok(false)` to close.
    pub fn echo_ready(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        if !self.eof && self.out.len() < OUTPUT_CAP {
            self.read_once(buf)?;
        }
        self.flush()?;
        Ok(self.keep_open())
    }
}

/// Accepts every connection waiting on the non-blocking `listener` into
/// `conns`, until `EAGAIN`. Returns `Ok(false)` when shutdown is requested
/// (the contract's shutdown thread wakes us by connecting).
pub fn accept_all(
    listener: &TcpListener,
    config: &Config,
    conns: &mut Vec<Conn>,
) -> io::Result<bool> {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if config.shutdown.requested() {
                    return Ok(false);
                }
                stream.set_nonblocking(true)?;
                conns.push(Conn {
                    stream,
                    out: Vec::new(),
                    eof: false,
                });
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
            Err(e) if accept_error_is_transient(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Serves until shutdown: each turn polls the listener and every
/// connection for `interest(conn)`, calls `handle` on each connection with
/// any event (`Ok(false)` closes it), then accepts.
///
/// An `Err` from `handle` is returned from here, ending the server: which
/// errors are the server's and which only the connection's is the caller's
/// decision, made visibly in its bin (a correct one maps a connection's
/// error to `Ok(false)`).
pub fn poll_loop(
    listener: TcpListener,
    config: &Config,
    interest: impl Fn(&Conn) -> PollFlags,
    mut handle: impl FnMut(&mut Conn, &mut [u8]) -> io::Result<bool>,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut conns: Vec<Conn> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let ready: Vec<PollFlags> = {
            let mut fds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
            fds.extend(
                conns
                    .iter()
                    .map(|c| PollFd::new(c.stream.as_fd(), interest(c))),
            );
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            fds.iter()
                .map(|p| p.revents().unwrap_or(PollFlags::empty()))
                .collect()
        };
        let mut keep = Vec::with_capacity(conns.len());
        for (c, events) in conns.iter_mut().zip(&ready[1..]) {
            keep.push(events.is_empty() || handle(c, &mut buf)?);
        }
        let mut keep = keep.into_iter();
        conns.retain(|_| keep.next().unwrap_or(true));
        if ready[0].contains(PollFlags::POLLIN) && !accept_all(&listener, config, &mut conns)? {
            return Ok(());
        }
    }
}
