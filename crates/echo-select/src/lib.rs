//! The select echo server: one thread, non-blocking sockets, and
//! `select(2)` told afresh on every round which descriptors to watch for
//! reading and which for writing.
//!
//! Run with `cargo run -p echo-select -- --addr 127.0.0.1:7000`, then
//! connect a few `nc 127.0.0.1 7000`: one thread serves them all, as long
//! as their descriptors stay below 1024.
//!
//! # Syscalls
//!
//! `select(2)` with a read set and a write set (`fd_set` bitmaps) to sleep
//! until something is ready. Sockets are made non-blocking with
//! `ioctl(FIONBIO)` (std's `set_nonblocking`), so `accept4(2)`, `read(2)`
//! and `write(2)` return `EAGAIN` instead of blocking. `open(2)` of
//! `/dev/null` keeps a spare descriptor for `EMFILE`. The shutdown
//! `eventfd(2)` sits in the read set next to the listener.
//!
//! # Trade-offs
//!
//! Good at: a few hundred connections on one thread, with the oldest and
//! most portable readiness call there is. An idle client costs a
//! descriptor and a small struct, not a thread, and no CPU: the loop
//! sleeps in `select` until a descriptor it asked about is ready.
//!
//! What it costs, beyond the state machine every readiness model shares:
//!
//! - The sets are value-result arguments. The kernel overwrites them with
//!   the ready subset, so they are built again before every call: O(n) to
//!   fill, O(n) in the kernel to poll every watched socket, O(n) to find
//!   the ready ones, on every wake-up, however few are ready. `epoll` keeps
//!   the interest list in the kernel and returns only the ready ones.
//! - An `fd_set` is a bitmap of [`FD_SETSIZE`] (1024) bits, indexed by
//!   descriptor number. A descriptor numbered 1024 or more cannot be
//!   watched at all: in C, `FD_SET` would write past the bitmap; nix's
//!   `FdSet::insert` panics. This model refuses (closes) such a
//!   connection right after `accept`, so it holds at most 1024 clients
//!   less its own descriptors (stdio, listener, eventfd, spare: 1,018 when
//!   it inherits nothing else), whatever `--max-conns` says.
//!   `poll(2)` takes an array instead and has no such bound.
//!
//! nix's `select` rather than `libc::select`: its `FdSet` borrows each
//! descriptor it holds, so no socket can be closed while a set still names
//! it, and no `unsafe` is needed here. Its one sharp edge, the panic at
//! `FD_SETSIZE`, is exactly the check this model has to make anyway.
//!
//! # What the benchmark is expected to show
//!
//! With a few dozen busy clients, much the same CPU per echo as epoll: the
//! scans are short. As connections grow, every wake-up pays for all of
//! them, busy or idle, and past FD_SETSIZE the model refuses clients
//! outright.

#![warn(missing_docs)]

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use echo_protocol::nonblocking::{self, Accepted, Echo, Spare, accept_one};
use echo_protocol::{Config, Model, NoFlags};
use nix::errno::Errno;
use nix::sys::select::{FdSet, select};

pub use echo_protocol::nonblocking::{OUTPUT_CAP, READ_CHUNK};
pub use nix::sys::select::FD_SETSIZE;

/// This model, as the contract sees it.
///
/// `beyond-fd-setsize` holds 1,100 connections at once. An `fd_set` names
/// descriptors 0 to [`FD_SETSIZE`] - 1 only (1024 bits), and the kernel
/// gives each new socket the lowest free number, so once every number
/// below 1024 is taken (by stdio, the listener, the eventfd, the spare and
/// about 1,018 clients) every further client gets a descriptor `select`
/// cannot watch. Those are refused: closed right after `accept`, which the
/// client sees as EOF or a reset. The server keeps serving the others and
/// serves new clients once descriptors below 1024 are free again.
pub const MODEL: Model = Model {
    name: "echo-select",
    expected_limits: &[
        // Descriptors >= FD_SETSIZE are refused: see the doc comment above.
        "beyond-fd-setsize",
    ],
};

/// Most connections accepted per wake-up, so that a flood of new clients
/// cannot delay the ones already connected.
const ACCEPT_BATCH: usize = 64;

/// Whether `select(2)` can watch descriptor `fd`: an `fd_set` has one bit
/// for each of 0 to [`FD_SETSIZE`] - 1 and no room for any other.
pub fn watchable(fd: RawFd) -> bool {
    usize::try_from(fd).is_ok_and(|fd| fd < FD_SETSIZE)
}

/// One client.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// Read but not yet written back, bounded by [`OUTPUT_CAP`].
    echo: Echo,
}

/// What `select` reported for one connection in the current round.
#[derive(Debug, Clone, Copy, Default)]
struct Ready {
    read: bool,
    write: bool,
}

impl Conn {
    // ANCHOR: ready
    /// Handles one round's readiness. Returns `Ok(true)` when the
    /// connection is finished (client half-closed and everything echoed).
    ///
    /// `select` has no separate error report for sockets (its third set is
    /// for out-of-band data): a reset socket shows up as readable, or as
    /// writable, and the `read` or `write` returns the error.
    fn on_ready(&mut self, ready: Ready, scratch: &mut [u8]) -> io::Result<bool> {
        // Reported only if it was in the read set, so only while its output
        // was under the cap. One read: select reports the socket again on
        // the next round if more is waiting, so a fast sender cannot starve
        // the others.
        if ready.read {
            self.echo.read_from(&mut self.stream, scratch)?;
        }
        // Whether woken for writing or just after a read: try now, most of
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

/// Fails with a clear error if `select` cannot watch one of the server's
/// own descriptors. Both are opened early and get low numbers, so this
/// only fires if the process was started with a thousand descriptors open.
fn check_watchable(fd: BorrowedFd<'_>, what: &str) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    if watchable(raw) {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "the {what}'s descriptor {raw} is not below FD_SETSIZE ({FD_SETSIZE}): select(2) cannot watch it"
    )))
}

/// Puts `fd` in `set` and raises `nfds`, select's first argument, to one
/// more than the highest descriptor watched: the kernel looks at every
/// number below it. Only called with descriptors [`watchable`] said yes to,
/// so `FdSet::insert` cannot panic.
fn watch<'fd>(set: &mut FdSet<'fd>, fd: BorrowedFd<'fd>, nfds: &mut i32) {
    *nfds = (*nfds).max(fd.as_raw_fd() + 1);
    set.insert(fd);
}

/// Serves every client from this one thread until shutdown is requested and
/// the open connections have finished.
pub fn serve(listener: TcpListener, config: &Config, _flags: NoFlags) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    check_watchable(listener.as_fd(), "listener")?;
    check_watchable(config.shutdown.fd(), "shutdown eventfd")?;
    config.log(format_args!(
        "select(2) watches descriptors below FD_SETSIZE ({FD_SETSIZE}) only: \
         connections given a higher one are refused"
    ));
    let mut listener = Some(listener);
    let mut spare = Spare::new()?;
    let mut conns: Vec<Conn> = Vec::new();
    // One entry per connection, in the order of `conns`; reused each round.
    let mut ready: Vec<Ready> = Vec::new();
    let mut scratch = vec![0; READ_CHUNK];

    // ANCHOR: event-loop
    while listener.is_some() || !conns.is_empty() {
        // ANCHOR: sets
        // The sets borrow every descriptor they name, so they live only in
        // this block: what select reported is copied out before any
        // connection is closed or accepted.
        let (accept_ready, shutdown_ready) = {
            let mut read_set = FdSet::new();
            let mut write_set = FdSet::new();
            let mut nfds = 0;
            // The eventfd is watched only while we still accept: once seen,
            // it would stay readable and wake every round.
            if let Some(l) = &listener {
                watch(&mut read_set, l.as_fd(), &mut nfds);
                watch(&mut read_set, config.shutdown.fd(), &mut nfds);
            }
            // Every connection is in at least one set: one that wants
            // neither to read nor to write is done, and was closed.
            for c in &conns {
                // Read while the client has not half-closed and its output
                // is under the cap: dropping it from the read set is the
                // back-pressure.
                if c.echo.wants_read() {
                    watch(&mut read_set, c.stream.as_fd(), &mut nfds);
                }
                // Write interest only while output is pending. A socket is
                // writable nearly all the time, so always asking would make
                // select return at once, every round, for every client.
                if c.echo.wants_write() {
                    watch(&mut write_set, c.stream.as_fd(), &mut nfds);
                }
            }
            match select(nfds, &mut read_set, &mut write_set, None, None) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            ready.clear();
            ready.extend(conns.iter().map(|c| Ready {
                read: read_set.contains(c.stream.as_fd()),
                write: write_set.contains(c.stream.as_fd()),
            }));
            match &listener {
                Some(l) => (
                    read_set.contains(l.as_fd()),
                    read_set.contains(config.shutdown.fd()),
                ),
                None => (false, false),
            }
        };
        // ANCHOR_END: sets

        // The O(n) scan for the ready few.
        let mut index = 0;
        conns.retain_mut(|conn| {
            let r = ready[index];
            index += 1;
            if !(r.read || r.write) {
                return true;
            }
            match conn.on_ready(r, &mut scratch) {
                Ok(false) => true,
                Ok(true) => {
                    config.log(format_args!(
                        "{}: closed after {} bytes",
                        conn.peer,
                        conn.echo.echoed()
                    ));
                    false
                }
                Err(e) => {
                    config.log(format_args!("{}: {e}", conn.peer));
                    false
                }
            }
        });

        if shutdown_ready {
            // Dropping the listener closes it: no new clients, and the
            // eventfd leaves the set with it.
            listener = None;
            config.log(format_args!(
                "shutdown requested: no longer accepting, {} connections open",
                conns.len()
            ));
        } else if let Some(l) = listener.as_ref().filter(|_| accept_ready) {
            accept_batch(l, &mut spare, &mut conns, config);
        }
    }
    // ANCHOR_END: event-loop
    config.log(format_args!("shutdown: all connections closed"));
    Ok(())
}

/// Accepts until the backlog is empty or [`ACCEPT_BATCH`] is reached.
/// Out of descriptors, [`accept_one`] sheds the connection with the spare
/// descriptor: select would otherwise report the listener on every round,
/// and the loop would spin at 100 % CPU.
fn accept_batch(listener: &TcpListener, spare: &mut Spare, conns: &mut Vec<Conn>, config: &Config) {
    for _ in 0..ACCEPT_BATCH {
        match accept_one(listener, spare) {
            Accepted::Client(stream, peer) => admit(conns, stream, peer, config),
            Accepted::Empty => return,
            Accepted::Skipped(e) => config.log(format_args!("accept: {e}")),
            // Nothing to free here: serve the connections we have and
            // retry on the next wake-up.
            Accepted::Later(e) => {
                config.log(format_args!("accept: {e}"));
                return;
            }
        }
    }
}

// ANCHOR: admit
/// Takes a new client into the table, or refuses it by closing it.
fn admit(conns: &mut Vec<Conn>, stream: TcpStream, peer: SocketAddr, config: &Config) {
    let fd = stream.as_raw_fd();
    // Checked before anything else: a connection that cannot be put in an
    // fd_set must never reach the table, whose every entry goes into a
    // set next round. The alternative, accepting it and leaving it out of
    // the sets, would hold a client that is never served.
    if !watchable(fd) {
        config.log(format_args!(
            "{peer}: refused, descriptor {fd} is not below FD_SETSIZE ({FD_SETSIZE})"
        ));
        return;
    }
    let Some(stream) = nonblocking::admit(stream, peer, conns.len(), config) else {
        return;
    };
    conns.push(Conn {
        stream,
        peer,
        echo: Echo::new(),
    });
}
// ANCHOR_END: admit
