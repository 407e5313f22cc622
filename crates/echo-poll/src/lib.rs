//! The poll echo server: one thread, non-blocking sockets, and `poll(2)`
//! over an array of `pollfd` entries that the loop keeps up to date as
//! clients come and go, rather than rebuilding it every round.
//!
//! Run with `cargo run -p echo-poll -- --addr 127.0.0.1:7000`, then
//! connect as many `nc 127.0.0.1 7000` as you like: one thread serves all,
//! past the 1,024 descriptors `select` stops at.
//!
//! # Syscalls
//!
//! `poll(2)` once per round, handed the whole array: the listener, the
//! shutdown eventfd and one entry per client, each with the events wanted
//! (`POLLIN`, `POLLOUT`); the kernel fills in `revents`. Sockets are made
//! non-blocking with `ioctl(FIONBIO)` (std's `set_nonblocking`), so
//! `accept4(2)`, `read(2)` and `write(2)` return `EAGAIN` instead of
//! blocking. `open(2)` of `/dev/null` keeps a spare descriptor for `EMFILE`.
//!
//! # Trade-offs
//!
//! Against `select`: no descriptor limit. An entry holds the descriptor's
//! number, not a bit at that position in a fixed 1,024-bit set, so a
//! client on descriptor 5,000 is watched like one on 5. And the interest
//! list persists: a client's entry is pushed when it is accepted, its
//! `events` rewritten only when its interest changes, and it is removed by
//! swap-remove when it closes, where `select` must rebuild its sets before
//! every call because the kernel overwrites them with the result.
//!
//! Against `epoll`: still O(n) per wake-up. That list lives in our memory,
//! so every `poll` copies all n entries into the kernel, which asks every
//! socket whether it is ready and copies n entries back; then the loop
//! walks all n to find the few with `revents` set. One busy client among
//! ten thousand idle ones costs ten thousand entries per round. `epoll`
//! keeps the list in the kernel and returns only the ready ones: O(ready).
//!
//! Like `epoll`, the code is a state machine over [`Echo`]: back-pressure is
//! written by hand (no `POLLIN` while a client's unsent echo is over
//! [`OUTPUT_CAP`]), and one thread uses one core.

#![warn(missing_docs)]

use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};

use echo_protocol::nonblocking::{Accepted, Echo, Spare, accept_one, admit};
use echo_protocol::{Config, Model, NoFlags};
use libc::{POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, c_short, pollfd};

/// This model, as the contract sees it: it meets every conformance case,
/// `beyond-fd-setsize` included.
pub const MODEL: Model = Model {
    name: "echo-poll",
    expected_limits: &[],
};

pub use echo_protocol::nonblocking::{OUTPUT_CAP, READ_CHUNK};

/// Most connections accepted per wake-up, so that a flood of new clients
/// cannot delay the ones already connected.
const ACCEPT_BATCH: usize = 64;

/// Fixed slots of the array; clients follow from [`FIRST_CLIENT`]. Fixed
/// positions rather than tokens: `poll` reports by position, and these two
/// never move because clients are only ever swapped among themselves.
const LISTENER: usize = 0;
const SHUTDOWN: usize = 1;
const FIRST_CLIENT: usize = 2;

// ANCHOR: pollfd-choice
/// One entry of the array handed to `poll(2)`.
///
/// libc's plain `pollfd` rather than nix's `PollFd<'fd>`: nix's entry
/// borrows the descriptor (`BorrowedFd<'fd>`), so a `Vec<PollFd>` kept from
/// one round to the next would borrow the very connections it sits beside,
/// and a connection could not be pushed or removed while the array exists.
/// nix leaves two ways round that: rebuild the array from the connections
/// every round (what `select` must do, and what this model exists to avoid)
/// or forge `'static` borrows with `BorrowedFd::borrow_raw` (unsafe, and a
/// lie). The plain struct holds the number only; the one `unsafe` is the
/// `poll` call itself, and the bookkeeping below keeps each number owned.
fn entry(fd: RawFd, events: c_short) -> pollfd {
    pollfd {
        fd,
        events,
        revents: 0,
    }
}
// ANCHOR_END: pollfd-choice

/// One client.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// Read but not yet written back, bounded by [`OUTPUT_CAP`].
    echo: Echo,
}

impl Conn {
    // ANCHOR: interest
    /// Read while the client has not half-closed and its output is not
    /// piling up; ask for `POLLOUT` only while there is output to write.
    /// A socket is writable nearly all the time, so an always-on `POLLOUT`
    /// would make every `poll` return at once.
    fn wanted_events(&self) -> c_short {
        let mut events = 0;
        if self.echo.wants_read() {
            events |= POLLIN;
        }
        if self.echo.wants_write() {
            events |= POLLOUT;
        }
        events
    }
    // ANCHOR_END: interest

    // ANCHOR: ready
    /// Handles one entry's `revents`. Returns `Ok(true)` when the connection
    /// is finished (client half-closed and everything was echoed).
    fn on_ready(&mut self, revents: c_short, scratch: &mut [u8]) -> io::Result<bool> {
        // POLLNVAL: the entry names a descriptor that is not open. Each
        // entry's descriptor is owned by the connection beside it, so this
        // is a bookkeeping bug; drop the connection rather than spin on it
        // (poll reports POLLNVAL on every call, whatever we ask for).
        if revents & POLLNVAL != 0 {
            return Err(io::Error::other("descriptor not open (POLLNVAL)"));
        }
        // POLLHUP and POLLERR are reported even though nobody asks for them.
        // POLLHUP on a TCP socket means both directions are shut; we shut
        // ours only when done, so it was the peer's reset: nothing we write
        // can arrive any more. POLLERR is such a fatal socket error.
        if revents & (POLLERR | POLLHUP) != 0 {
            let err = self.stream.take_error()?;
            return Err(err.unwrap_or_else(|| ErrorKind::ConnectionReset.into()));
        }
        // Only reported while we asked for it: output under the cap. One
        // read: level-triggered, poll reports the socket again if more is
        // waiting, so a fast sender cannot starve the others.
        if revents & POLLIN != 0 {
            self.echo.read_from(&mut self.stream, scratch)?;
        }
        // Whether woken by POLLOUT or just after a read: try now, most of
        // the time the whole echo fits in the socket buffer at once.
        if self.echo.wants_write() {
            self.echo.flush_to(&mut self.stream)?;
        }
        if self.echo.done() {
            self.stream.shutdown(Shutdown::Write)?;
            return Ok(true);
        }
        Ok(false)
    }
    // ANCHOR_END: ready
}

// ANCHOR: table
/// The array `poll` is handed and the connections, in the same order:
/// `fds[FIRST_CLIENT + i]` is the socket of `conns[i]`. Every change goes
/// through [`Table::push`] and [`Table::swap_remove`], which move both
/// vectors alike; that is the whole invariant, and the one a `poll` server
/// most easily breaks.
struct Table {
    fds: Vec<pollfd>,
    conns: Vec<Conn>,
}

impl Table {
    fn push(&mut self, conn: Conn) {
        self.fds
            .push(entry(conn.stream.as_raw_fd(), conn.wanted_events()));
        self.conns.push(conn);
    }

    /// Removes client `i` in O(1): the last client moves into its place in
    /// both vectors. `Vec::remove` would keep the order but shift every
    /// later entry, O(n) per close; the order means nothing to `poll`.
    fn swap_remove(&mut self, i: usize) -> Conn {
        self.fds.swap_remove(FIRST_CLIENT + i);
        self.conns.swap_remove(i)
    }

    /// One `poll(2)` with no timeout: the shutdown eventfd is in the array,
    /// so nothing needs a periodic look. Returns how many entries have
    /// `revents` set.
    fn wait(&mut self) -> io::Result<usize> {
        // The kernel rejects more entries than RLIMIT_NOFILE with EINVAL;
        // every entry here is a descriptor we hold (or -1 in a fixed slot,
        // and we hold stdio and the spare besides), so that never happens.
        // `fds` is libc's `#[repr(C)]` `pollfd`; the kernel keeps no pointer
        // once the call returns.
        let (ptr, len) = (self.fds.as_mut_ptr(), self.fds.len() as libc::nfds_t);
        // SAFETY: a live, exclusively borrowed slice and its own length: the
        // kernel reads and writes only within it.
        let n = unsafe { libc::poll(ptr, len, -1) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}
// ANCHOR_END: table

/// Serves every client from this one thread until shutdown is requested and
/// the open connections have finished.
pub fn serve(listener: TcpListener, config: &Config, _flags: NoFlags) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut table = Table {
        fds: vec![
            entry(listener.as_raw_fd(), POLLIN),
            entry(config.shutdown.fd().as_raw_fd(), POLLIN),
        ],
        conns: Vec::new(),
    };
    let mut listener = Some(listener);
    let mut spare = Spare::new()?;
    let mut scratch = vec![0; READ_CHUNK];

    // ANCHOR: event-loop
    while listener.is_some() || !table.conns.is_empty() {
        let ready = match table.wait() {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let fixed = &table.fds[..FIRST_CLIENT];
        if fixed.iter().any(|p| p.revents & POLLNVAL != 0) {
            return Err(io::Error::other(
                "poll: the listener or the shutdown eventfd is not open (POLLNVAL)",
            ));
        }
        let (listener_ready, shutdown_ready) =
            (fixed[LISTENER].revents != 0, fixed[SHUTDOWN].revents != 0);
        let mut clients_ready = ready - listener_ready as usize - shutdown_ready as usize;

        // Backwards, because of swap-remove: closing client i moves the
        // last client into slot i, and walking down from the end that one
        // has been handled already, so none is skipped and none handled
        // twice. Walking forwards would have to stay at i after a removal
        // to handle the newcomer (skipping it only delays it a round, since
        // level-triggered poll reports it again, but the delay is a bug in
        // waiting). `clients_ready` stops the walk once every
        // ready entry is found (Stevens' `--nready` idiom): fewer entries
        // looked at, still O(n) in the worst case.
        let mut i = table.conns.len();
        while clients_ready > 0 && i > 0 {
            i -= 1;
            let revents = table.fds[FIRST_CLIENT + i].revents;
            if revents == 0 {
                continue;
            }
            clients_ready -= 1;
            let conn = &mut table.conns[i];
            let result = match conn.on_ready(revents, &mut scratch) {
                Ok(false) => {
                    // A store into our own array, no syscall: epoll needs an
                    // EPOLL_CTL_MOD for this, poll reads the array afresh on
                    // every call. Rewriting an unchanged value changes
                    // nothing.
                    table.fds[FIRST_CLIENT + i].events = conn.wanted_events();
                    continue;
                }
                Ok(true) => Ok(()),
                Err(e) => Err(e),
            };
            // Dropping the connection closes its descriptor now. Its number
            // may be reused only by an accept, which comes after this walk
            // and appends with `revents` clear, so a stale report cannot be
            // taken for a new client (epoll must defer its closes for that).
            let conn = table.swap_remove(i);
            match result {
                Ok(()) => config.log(format_args!(
                    "{}: closed after {} bytes",
                    conn.peer,
                    conn.echo.echoed()
                )),
                Err(e) => config.log(format_args!("{}: {e}", conn.peer)),
            }
        }

        if shutdown_ready {
            // The eventfd stays readable and the listener is going: a
            // negative descriptor makes poll skip an entry (revents 0), so
            // the fixed slots keep their places.
            table.fds[SHUTDOWN].fd = -1;
            table.fds[LISTENER].fd = -1;
            if listener.take().is_some() {
                config.log(format_args!(
                    "shutdown requested: no longer accepting, {} connections open",
                    table.conns.len()
                ));
            }
        } else if listener_ready {
            if let Some(l) = &listener {
                accept_batch(l, &mut spare, &mut table, config);
            }
        }
    }
    // ANCHOR_END: event-loop
    config.log(format_args!("shutdown: all connections closed"));
    Ok(())
}

/// Accepts until the backlog is empty or [`ACCEPT_BATCH`] is reached, and
/// appends each new client to the table. Out of descriptors,
/// [`accept_one`] sheds the connection with the spare descriptor: poll
/// would otherwise report the listener on every call, and the loop would
/// spin at 100 % CPU.
fn accept_batch(listener: &TcpListener, spare: &mut Spare, table: &mut Table, config: &Config) {
    for _ in 0..ACCEPT_BATCH {
        let (stream, peer) = match accept_one(listener, spare) {
            Accepted::Client(stream, peer) => (stream, peer),
            Accepted::Empty => return,
            Accepted::Skipped(e) => {
                config.log(format_args!("accept: {e}"));
                continue;
            }
            // Nothing to free here: serve the connections we have and
            // retry on the next wake-up.
            Accepted::Later(e) => {
                config.log(format_args!("accept: {e}"));
                return;
            }
        };
        let Some(stream) = admit(stream, peer, table.conns.len(), config) else {
            continue;
        };
        table.push(Conn {
            stream,
            peer,
            echo: Echo::new(),
        });
    }
}
