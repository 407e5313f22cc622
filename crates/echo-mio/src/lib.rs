//! The mio echo server: the epoll loop of `echo-epoll` written against
//! mio, Rust's portable selector (what Python's `selectors` is to
//! `select`, `poll` and `epoll`). One thread, non-blocking sockets, and
//! mio's `Poll` saying which of them are ready.
//!
//! Run with `cargo run -p echo-mio -- --addr 127.0.0.1:7000`, then
//! connect as many `nc 127.0.0.1 7000` as you like: one thread serves all.
//!
//! # Syscalls
//!
//! On Linux mio is a thin layer over `epoll(7)`: `epoll_create1(2)` in
//! `Poll::new`, `epoll_ctl(2)` in `Registry::register` (always with
//! `EPOLLET | EPOLLRDHUP`), `epoll_wait(2)` in `Poll::poll`. Sockets are
//! made non-blocking with `ioctl(FIONBIO)`, so `accept4(2)`, `read(2)` and
//! `write(2)` return `EAGAIN` instead of blocking. `open(2)` of
//! `/dev/null` keeps a spare descriptor for `EMFILE`.
//!
//! # What mio adds and hides
//!
//! It adds portability (kqueue, IOCP through AFD, `poll(2)` elsewhere) and
//! typed registration: a [`Token`] instead of a `u64`, an [`Interest`]
//! that cannot be empty, an [`Event`] asked `is_readable()` or
//! `is_read_closed()` instead of testing `EPOLLIN` and `EPOLLRDHUP`.
//! It hides the choice of trigger: every source is edge-triggered, the
//! one behaviour mio can give on every backend (kqueue's `EV_CLEAR`;
//! emulated over Windows' one-shot polls). An event is news of a change,
//! told once, so a connection may be left to wait for the next one only
//! after a read or a write has answered `WouldBlock`: only those promise
//! another event. A socket the loop stopped reading early (output at
//! [`OUTPUT_CAP`], or the fairness bound [`READS_PER_WAKE`]) must be
//! remembered, since no new event comes for bytes already waiting. That
//! memory is the `unread` flag and the `ready` list below, the two things
//! `echo-epoll`'s level-triggered loop gets from the kernel for free.
//!
//! # Trade-offs
//!
//! Those of `echo-epoll`: many mostly idle connections are cheap, a
//! wake-up costs O(ready), one thread uses one core and anything slow in
//! the loop delays every client. Edge triggering spends one more `read`
//! per burst (the one that answers `EAGAIN`, made from the `ready` list
//! once the batch's other events are served, before the next `poll`; by
//! then the client has often sent again, and the read brings that) and
//! saves the `epoll_ctl` calls that level-triggered back-pressure needs:
//! interest here is set once per socket and never changed. Not taken:
//! tokio's shortcut of taking a short read as proof that the socket is
//! empty, which saves that `read` but rests on how epoll and kqueue report
//! data, not on what mio promises.

#![warn(missing_docs)]

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use echo_protocol::nonblocking::{self, Accepted, Echo, Spare, accept_one};
use echo_protocol::{ACCEPT_BACKOFF, Config, Model, NoFlags};
use mio::event::Event;
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};

/// This model, as the contract sees it: it meets every conformance case.
pub const MODEL: Model = Model {
    name: "echo-mio",
    expected_limits: &[],
};

pub use echo_protocol::nonblocking::{OUTPUT_CAP, READ_CHUNK};

/// Most connections accepted per wake-up, so that a flood of new clients
/// cannot delay the ones already connected.
const ACCEPT_BATCH: usize = 64;

/// Events fetched per `poll`; more ready sources wait for the next call,
/// nothing is lost (the kernel keeps them on its ready list).
const MAX_EVENTS: usize = 256;

/// Most reads from one connection per turn of the loop. "Read until
/// `WouldBlock`" alone is unbounded: on loopback a client can refill its
/// socket as fast as we empty it, and every other client would wait. A
/// connection stopped by this bound goes on the `ready` list and gets its
/// next turn once the other events of the same batch are served (stopped
/// again, after a `poll` that does not sleep), so the others' events come
/// first: level triggering, kept by hand. One read of [`READ_CHUNK`]
/// is the share `echo-epoll` gives. Larger turns cost the others latency
/// and buy nothing measurable: with 16 (1 MiB, about what the output cap
/// alone would allow), a short request beside two clients streaming at
/// full speed waited milliseconds instead of about a hundred microseconds,
/// while bulk throughput and CPU per echo did not improve.
pub const READS_PER_WAKE: usize = 1;

/// Tokens for the two sources that are not clients. Clients use their
/// descriptor number, which is never negative and so never reaches these.
const LISTENER: Token = Token(usize::MAX);
const SHUTDOWN: Token = Token(usize::MAX - 1);

/// One client.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// Read but not yet written back, bounded by [`OUTPUT_CAP`].
    echo: Echo,
    /// The socket may hold bytes (or an EOF) we have not read: set by a
    /// readable event, cleared only by `WouldBlock` or EOF. This is the
    /// level that edge triggering does not keep for us.
    unread: bool,
    /// On the `ready` list already.
    queued: bool,
}

impl Conn {
    // ANCHOR: interest
    /// Both, once, for the socket's whole life: with edge triggering an
    /// interest we do not act on costs at most one wake-up per change of
    /// state, not one per wait as `EPOLLOUT` would under level triggering.
    /// Back-pressure is then simply not reading (see [`Conn::drive`]),
    /// with no `reregister` (`EPOLL_CTL_MOD`) as data comes and goes.
    const INTEREST: Interest = Interest::READABLE.add(Interest::WRITABLE);
    // ANCHOR_END: interest

    // ANCHOR: ready
    /// Handles one readiness report. Returns `Ok(true)` when the connection
    /// is finished (client half-closed and everything was echoed).
    fn on_ready(&mut self, event: &Event, scratch: &mut [u8]) -> io::Result<bool> {
        // mio's names for EPOLLERR and EPOLLHUP (both directions shut). We
        // shut ours only when done, so it was the peer's reset or a
        // timeout: nothing we write can arrive any more.
        if event.is_error() || (event.is_read_closed() && event.is_write_closed()) {
            let err = self.stream.take_error()?;
            return Err(err.unwrap_or_else(|| ErrorKind::ConnectionReset.into()));
        }
        // A FIN is news to read too: the read that returns 0 tells us.
        if event.is_readable() || event.is_read_closed() {
            self.unread = true;
        }
        // Writability needs no flag: `flush_to` writes until `WouldBlock`,
        // and after a `WouldBlock` the kernel reports the next change.
        self.drive(scratch)
    }

    /// Reads what is waiting, within the output cap and the fairness bound,
    /// then writes back what it can. Called for an event, and again from
    /// the `ready` list for a connection that stopped reading early.
    fn drive(&mut self, scratch: &mut [u8]) -> io::Result<bool> {
        self.echo
            .edge_turn(&mut self.stream, &mut self.unread, READS_PER_WAKE, scratch)?;
        if self.echo.done() {
            self.stream.shutdown(Shutdown::Write)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Stopped reading with bytes left and room to take them: by the
    /// fairness bound, or at the cap whose output has just drained. No
    /// event will come for them, so the loop must come back by itself.
    /// Stopped at the cap with output still queued, it needs nothing: the
    /// write that hit `WouldBlock` guarantees a writable event.
    fn needs_another_turn(&self) -> bool {
        self.unread && self.echo.wants_read()
    }
    // ANCHOR_END: ready
}

/// The connections and the loop's reusable buffers.
struct Clients {
    /// Keyed by descriptor, which is also the event's token.
    conns: HashMap<RawFd, Conn>,
    /// Connections to drive again before the next sleep (see
    /// [`Conn::needs_another_turn`]).
    ready: Vec<RawFd>,
    /// Connections closed during the current turn. Their descriptors stay
    /// open until the turn is done, so the kernel cannot hand the same
    /// number to a connection accepted later in the turn, and a stale event
    /// or `ready` entry for the old one cannot be taken for the new one.
    closing: Vec<Conn>,
    scratch: Vec<u8>,
}

impl Clients {
    fn admit(
        &mut self,
        registry: &Registry,
        stream: std::net::TcpStream,
        peer: SocketAddr,
        config: &Config,
    ) {
        // mio's `from_std` leaves the mode to us: `admit` makes it
        // non-blocking.
        let Some(stream) = nonblocking::admit(stream, peer, self.conns.len(), config) else {
            return;
        };
        let mut stream = TcpStream::from_std(stream);
        let fd = stream.as_raw_fd();
        if let Err(e) = registry.register(&mut stream, Token(fd as usize), Conn::INTEREST) {
            config.log(format_args!("{peer}: cannot register: {e}"));
            return;
        }
        self.conns.insert(
            fd,
            Conn {
                stream,
                peer,
                echo: Echo::new(),
                // Bytes may have arrived before registration; the event
                // for them is reported anyway (EPOLL_CTL_ADD looks at the
                // current state), so there is nothing to assume here.
                unread: false,
                queued: false,
            },
        );
    }

    fn on_ready(&mut self, fd: RawFd, event: &Event, config: &Config) {
        // Absent if it was closed earlier in this turn.
        let Some(conn) = self.conns.get_mut(&fd) else {
            return;
        };
        let outcome = conn.on_ready(event, &mut self.scratch);
        self.settle(fd, outcome, config);
    }

    /// Gives every connection on the `ready` list its next turn. Those
    /// stopped by the bound again go back on the list for the next one.
    fn drive_ready(&mut self, config: &Config) {
        for fd in std::mem::take(&mut self.ready) {
            let Some(conn) = self.conns.get_mut(&fd) else {
                continue;
            };
            conn.queued = false;
            let outcome = conn.drive(&mut self.scratch);
            self.settle(fd, outcome, config);
        }
    }

    /// After a turn: queue the connection again if it needs one, or close
    /// it if it is finished or failed.
    fn settle(&mut self, fd: RawFd, outcome: io::Result<bool>, config: &Config) {
        let result = match outcome {
            Ok(false) => {
                let Some(conn) = self.conns.get_mut(&fd) else {
                    return;
                };
                if conn.needs_another_turn() && !conn.queued {
                    conn.queued = true;
                    self.ready.push(fd);
                }
                return;
            }
            Ok(true) => Ok(()),
            Err(e) => Err(e),
        };
        let Some(conn) = self.conns.remove(&fd) else {
            return;
        };
        match result {
            Ok(()) => config.log(format_args!(
                "{}: closed after {} bytes",
                conn.peer,
                conn.echo.echoed()
            )),
            Err(e) => config.log(format_args!("{}: {e}", conn.peer)),
        }
        // No `deregister`: closing the last descriptor of a socket removes
        // it from the epoll set, which happens when `closing` is cleared.
        self.closing.push(conn);
    }
}

/// What is left in the listen backlog after [`accept_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backlog {
    /// Accepted until `WouldBlock`: the next connection brings an event.
    Empty,
    /// Stopped at [`ACCEPT_BATCH`]: accept again after the next `poll`,
    /// which must not sleep, since no event will say so.
    More,
    /// Out of memory or of a spare descriptor: retry after
    /// [`ACCEPT_BACKOFF`], since no event will say when.
    Later,
}

/// Serves every client from this one thread until shutdown is requested and
/// the open connections have finished.
pub fn serve(listener: TcpListener, config: &Config, _flags: NoFlags) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut poll = Poll::new()?;
    // The std listener, registered by its descriptor, rather than
    // `mio::net::TcpListener`: `accept_one` (shared with the other
    // readiness models) sheds connections on `EMFILE` and takes a std
    // listener. mio's own `accept` would only save the `ioctl(FIONBIO)`
    // per client that `admit` makes, by passing `SOCK_NONBLOCK` to `accept4`.
    poll.registry().register(
        &mut SourceFd(&listener.as_raw_fd()),
        LISTENER,
        Interest::READABLE,
    )?;
    poll.registry().register(
        &mut SourceFd(&config.shutdown.fd().as_raw_fd()),
        SHUTDOWN,
        Interest::READABLE,
    )?;
    let mut listener = Some(listener);
    let mut spare = Spare::new()?;
    let mut clients = Clients {
        conns: HashMap::new(),
        ready: Vec::new(),
        closing: Vec::new(),
        scratch: vec![0; READ_CHUNK],
    };
    let mut events = Events::with_capacity(MAX_EVENTS);
    let mut backlog = Backlog::Empty;

    // ANCHOR: event-loop
    while listener.is_some() || !clients.conns.is_empty() {
        // Sleep only when nothing is owed a turn: an edge already
        // reported is never reported again.
        let timeout = match backlog {
            _ if !clients.ready.is_empty() => Some(Duration::ZERO),
            Backlog::More => Some(Duration::ZERO),
            Backlog::Later => Some(ACCEPT_BACKOFF),
            Backlog::Empty => None,
        };
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in &events {
            match event.token() {
                LISTENER => backlog = Backlog::More,
                SHUTDOWN => {
                    // Edge-triggered: the eventfd stays readable but is
                    // reported once, so unlike echo-epoll it can stay in
                    // the set. The listener goes.
                    if let Some(l) = listener.take() {
                        let _ = poll.registry().deregister(&mut SourceFd(&l.as_raw_fd()));
                        config.log(format_args!(
                            "shutdown requested: no longer accepting, {} connections open",
                            clients.conns.len()
                        ));
                    }
                }
                Token(fd) => clients.on_ready(fd as RawFd, event, config),
            }
        }
        clients.drive_ready(config);
        backlog = match &listener {
            Some(l) if backlog != Backlog::Empty => {
                accept_batch(l, &mut spare, &mut clients, poll.registry(), config)
            }
            _ => Backlog::Empty,
        };
        clients.closing.clear();
    }
    // ANCHOR_END: event-loop
    config.log(format_args!("shutdown: all connections closed"));
    Ok(())
}

/// Accepts until the backlog is empty or [`ACCEPT_BATCH`] is reached, and
/// says which. Out of descriptors, [`accept_one`] sheds the connection with
/// the spare descriptor, so that the backlog empties and the client is not
/// left hanging.
fn accept_batch(
    listener: &TcpListener,
    spare: &mut Spare,
    clients: &mut Clients,
    registry: &Registry,
    config: &Config,
) -> Backlog {
    for _ in 0..ACCEPT_BATCH {
        match accept_one(listener, spare) {
            Accepted::Client(stream, peer) => clients.admit(registry, stream, peer, config),
            Accepted::Empty => return Backlog::Empty,
            Accepted::Skipped(e) => config.log(format_args!("accept: {e}")),
            // Nothing to free here: serve the connections we have and
            // retry after a pause. Retrying at once would spin; waiting
            // for an event would wait forever, since the connection
            // already in the backlog brings no new one.
            Accepted::Later(e) => {
                config.log(format_args!("accept: {e}"));
                return Backlog::Later;
            }
        }
    }
    Backlog::More
}
