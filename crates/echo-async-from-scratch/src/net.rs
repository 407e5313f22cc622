//! Step 3, futures over non-blocking sockets: accept, read and write as
//! futures that try the syscall and, on `EAGAIN`, leave the task's waker
//! with the reactor and return `Pending`. In seed 003's Python these are
//! `connect(sock)` and `read(sock)`: a `Future`, a callback registered with
//! the selector that calls `set_result`, and `yield from f`. Here the
//! future *is* the attempt: polling it again after a wake-up retries the
//! syscall, so there is no result to hand over and no callback to
//! unregister.
//!
//! # Syscalls
//!
//! `accept4(2)`, `read(2)`, `write(2)` on non-blocking descriptors (through
//! `echo_protocol::nonblocking`, which moves the bytes for every readiness
//! model), `open(2)` of `/dev/null` for the spare descriptor, and the
//! reactor's `epoll_ctl(EPOLL_CTL_ADD)` once per [`Async`].
//!
//! # Trade-offs
//!
//! The futures are written with `std::future::poll_fn` over one generic
//! [`Async::poll_io`], rather than as a named struct per operation with its
//! own `impl Future`: shorter, at the price of types that cannot be named
//! (which nothing here needs). Each operation borrows the [`Async`] for as
//! long as it is pending, so one task cannot read and write the same
//! socket at once; the echo never needs to (it writes everything before it
//! reads again). A readiness bit that is clear answers `Pending` with no
//! syscall at all (see the reactor for why that is safe with edges).

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::io::{self, ErrorKind};
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use echo_protocol::nonblocking::{Accepted, Echo, Read, Spare, accept_one};

use crate::reactor::{Direction, Reactor, Token};

/// A non-blocking descriptor registered with the reactor. The caller makes
/// it non-blocking first: a blocking one would stall the whole thread.
#[derive(Debug)]
pub struct Async<T: AsFd> {
    io: T,
    token: Token,
    reactor: Rc<Reactor>,
}

impl<T: AsFd> Async<T> {
    /// Registers `io` with `reactor`, once for its whole life.
    pub fn new(io: T, reactor: &Rc<Reactor>) -> io::Result<Async<T>> {
        let token = reactor.register(io.as_fd())?;
        Ok(Async {
            io,
            token,
            reactor: Rc::clone(reactor),
        })
    }

    /// The descriptor inside.
    pub fn get_ref(&self) -> &T {
        &self.io
    }

    // ANCHOR: poll-io
    /// The one pattern every future here follows: if the reactor says
    /// `direction` may be ready, try `op`; if `op` says `WouldBlock`, the
    /// bit is cleared and the task waits for the next edge. Any other
    /// outcome is the future's result.
    pub fn poll_io<R>(
        &self,
        direction: Direction,
        cx: &mut Context<'_>,
        op: impl FnOnce(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        if self
            .reactor
            .poll_ready(self.token, direction, cx)
            .is_pending()
        {
            return Poll::Pending;
        }
        match op(&self.io) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                self.reactor.clear_ready(self.token, direction);
                // Registers the waker: the bit is clear, so this is Pending.
                self.reactor
                    .poll_ready(self.token, direction, cx)
                    .map(|()| Err(e))
            }
            result => Poll::Ready(result),
        }
    }
    // ANCHOR_END: poll-io
}

impl<T: AsFd> Drop for Async<T> {
    /// Forgets the registration; dropping `io` right after closes the
    /// descriptor, which takes it out of the epoll set (no `EPOLL_CTL_DEL`).
    fn drop(&mut self) {
        self.reactor.deregister(self.token);
    }
}

impl Async<TcpListener> {
    /// Accepts one connection (never [`Accepted::Empty`]: an empty backlog
    /// is `Pending` until the next connection's edge). [`accept_one`] sheds
    /// a connection with the spare descriptor when the process is out of
    /// them, so a full descriptor table never leaves the backlog non-empty
    /// with nothing to do about it.
    pub fn accept<'a>(&'a self, spare: &'a mut Spare) -> impl Future<Output = Accepted> + 'a {
        poll_fn(move |cx| self.poll_accept(cx, spare))
    }

    /// The poll behind [`Async::accept`], for a caller that combines it
    /// with another future by hand.
    pub fn poll_accept(&self, cx: &mut Context<'_>, spare: &mut Spare) -> Poll<Accepted> {
        let polled = self.poll_io(Direction::Read, cx, |listener| {
            match accept_one(listener, spare) {
                Accepted::Empty => Err(ErrorKind::WouldBlock.into()),
                other => Ok(other),
            }
        });
        // `accept_one` returns no error of its own; its outcomes are all Ok.
        polled.map(|result| result.unwrap_or(Accepted::Empty))
    }
}

impl<S: AsFd> Async<S>
where
    for<'s> &'s S: io::Read + io::Write,
{
    /// One read into `echo`'s pending output (the seed's `yield from
    /// read(sock)`): data, or the client's EOF. `scratch` is one buffer
    /// shared by every connection of the thread: it is borrowed only inside
    /// a poll, never across an `.await`, so no two tasks can hold it.
    pub fn read_into<'a>(
        &'a self,
        echo: &'a mut Echo,
        scratch: &'a RefCell<Vec<u8>>,
    ) -> impl Future<Output = io::Result<Read>> + 'a {
        poll_fn(move |cx| {
            let mut scratch = scratch.borrow_mut();
            let got = self.poll_io(Direction::Read, cx, |mut io| {
                match echo.read_from(&mut io, &mut scratch)? {
                    Read::WouldBlock => Err(ErrorKind::WouldBlock.into()),
                    other => Ok(other),
                }
            });
            // A read shorter than the buffer emptied the socket: whatever
            // arrives next brings a new edge, so the next read can wait for
            // it instead of making a syscall that would say EAGAIN.
            if matches!(got, Poll::Ready(Ok(Read::Data(n))) if n < scratch.len()) {
                self.reactor.clear_ready(self.token, Direction::Read);
            }
            got
        })
    }

    /// Writes all of `echo`'s pending output, waiting for room as often as
    /// needed. Ready at once when there is nothing to write.
    pub fn write_all<'a>(
        &'a self,
        echo: &'a mut Echo,
    ) -> impl Future<Output = io::Result<()>> + 'a {
        poll_fn(move |cx| {
            while echo.wants_write() {
                let wrote = self.poll_io(Direction::Write, cx, |mut io| {
                    echo.flush_to(&mut io)?;
                    // flush_to stops at EAGAIN, and says so only by what it
                    // left unwritten.
                    if echo.wants_write() {
                        return Err(ErrorKind::WouldBlock.into());
                    }
                    Ok(())
                });
                match wrote {
                    Poll::Ready(Ok(())) => {}
                    other => return other,
                }
            }
            Poll::Ready(Ok(()))
        })
    }
}

/// Ready once `duration` has passed: the reactor's timer list, woken by the
/// `epoll_wait` timeout. A repeated poll before the deadline adds one more
/// entry; the only timer here is the accept back-off, polled once or twice.
pub fn sleep(reactor: &Rc<Reactor>, duration: Duration) -> impl Future<Output = ()> + '_ {
    let deadline = Instant::now() + duration;
    poll_fn(move |cx| {
        if Instant::now() >= deadline {
            return Poll::Ready(());
        }
        reactor.wake_at(deadline, cx);
        Poll::Pending
    })
}
