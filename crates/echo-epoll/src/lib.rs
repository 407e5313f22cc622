//! The epoll echo server: one thread, non-blocking sockets, and a
//! level-triggered `epoll(7)` instance that says which of them are ready.
//!
//! Run with `cargo run -p echo-epoll -- --addr 127.0.0.1:7000`, then
//! connect as many `nc 127.0.0.1 7000` as you like: one thread serves all.
//!
//! # Syscalls
//!
//! `epoll_create1(2)` once; `epoll_ctl(2)` to register the listener, the
//! shutdown eventfd and each client (`EPOLL_CTL_ADD`), and to change a
//! client's interest (`EPOLL_CTL_MOD`) only when it changes; `epoll_wait(2)`
//! to sleep until something is ready. Sockets are made non-blocking with
//! `ioctl(FIONBIO)` (std's `set_nonblocking`), so `accept4(2)`, `read(2)`
//! and `write(2)` return `EAGAIN` instead of blocking. `open(2)` of
//! `/dev/null` keeps a spare descriptor for `EMFILE`.
//!
//! # Trade-offs
//!
//! Good at: many connections, most of them idle. An idle client costs a
//! descriptor and a small struct, not a thread; `epoll_wait` returns only
//! the ready descriptors, so a wake-up costs O(ready), not O(connections)
//! as with `select` or `poll`. There is no locking: one thread owns all
//! state.
//!
//! What it costs: the code is a state machine. Each connection keeps its
//! unsent output ([`OUTPUT_CAP`] bounds it: back-pressure must be written
//! by hand, by no longer asking for `EPOLLIN`), and every blocking step of
//! the iterative model becomes "try, and on `EAGAIN` come back later".
//! One thread uses one core: anything slow in the loop (a long computation,
//! a blocking call) delays every client. Level-triggered mode is the
//! forgiving one: whatever we leave unread is reported again on the next
//! wait, so we can read a bounded amount per wake-up for fairness.
//!
//! # What the benchmark shows
//!
//! Memory and context switches stay flat from ten to thousands of
//! connections, and idle connections cost no CPU. Throughput is capped by
//! the one core the loop runs on: a multi-threaded design overtakes it once
//! several busy clients could use several cores.

#![warn(missing_docs)]

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};

use echo_protocol::nonblocking::{Accepted, Echo, Spare, accept_one};
use echo_protocol::{Config, Model, NoFlags};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// This model, as the contract sees it: it meets every conformance case.
pub const MODEL: Model = Model {
    name: "echo-epoll",
    expected_limits: &[],
};

pub use echo_protocol::nonblocking::{OUTPUT_CAP, READ_CHUNK};

/// Most connections accepted per wake-up, so that a flood of new clients
/// cannot delay the ones already connected.
const ACCEPT_BATCH: usize = 64;

/// Events fetched per `epoll_wait`; more ready descriptors wait for the next
/// call, nothing is lost.
const MAX_EVENTS: usize = 256;

/// Tokens in the event's `u64` for the two descriptors that are not
/// clients. Clients use their descriptor number, which is never negative
/// and so never reaches these.
const LISTENER: u64 = u64::MAX;
const SHUTDOWN: u64 = u64::MAX - 1;

/// One client.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// Read but not yet written back, bounded by [`OUTPUT_CAP`].
    echo: Echo,
    /// What epoll is currently asked to report for this socket.
    interest: EpollFlags,
}

impl Conn {
    // ANCHOR: interest
    /// Read while the client has not half-closed and its output is not
    /// piling up; ask for `EPOLLOUT` only while there is output to write.
    /// A socket is writable nearly all the time, so an always-on `EPOLLOUT`
    /// would wake the loop for every connection on every wait.
    fn wanted_interest(&self) -> EpollFlags {
        let mut interest = EpollFlags::empty();
        if self.echo.wants_read() {
            interest |= EpollFlags::EPOLLIN;
        }
        if self.echo.wants_write() {
            interest |= EpollFlags::EPOLLOUT;
        }
        interest
    }
    // ANCHOR_END: interest

    // ANCHOR: ready
    /// Handles one readiness report. Returns `Ok(true)` when the connection
    /// is finished (client half-closed and everything was echoed).
    fn on_ready(&mut self, events: EpollFlags, scratch: &mut [u8]) -> io::Result<bool> {
        // EPOLLHUP means both directions are shut. We shut ours only when
        // done, so it was the peer's reset or a timeout: nothing we write can
        // arrive any more. EPOLLERR is such a fatal socket error.
        if events.intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP) {
            let err = self.stream.take_error()?;
            return Err(err.unwrap_or_else(|| ErrorKind::ConnectionReset.into()));
        }
        // Only reported while we asked for it: output under the cap. One
        // read: level-triggered epoll reports the socket again if more is
        // waiting, so a fast sender cannot starve the others.
        if events.contains(EpollFlags::EPOLLIN) {
            self.echo.read_from(&mut self.stream, scratch)?;
        }
        // Whether woken by EPOLLOUT or just after a read: try now, most of
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

/// The connections and the loop's reusable buffers.
struct Clients {
    epoll: Epoll,
    /// Keyed by descriptor, which is also the event's token.
    conns: HashMap<RawFd, Conn>,
    /// Connections closed during the current batch of events. Their
    /// descriptors stay open until the batch is done, so the kernel cannot
    /// hand the same number to a connection accepted later in the batch,
    /// and a stale event for the old one cannot be taken for the new one.
    closing: Vec<Conn>,
    scratch: Vec<u8>,
}

impl Clients {
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr, config: &Config) {
        if self.conns.len() >= config.max_conns {
            config.log(format_args!(
                "{peer}: refused, {} connections open",
                config.max_conns
            ));
            return;
        }
        if let Err(e) = stream.set_nonblocking(true) {
            config.log(format_args!("{peer}: cannot make non-blocking: {e}"));
            return;
        }
        let fd = stream.as_raw_fd();
        let interest = EpollFlags::EPOLLIN;
        if let Err(e) = self
            .epoll
            .add(&stream, EpollEvent::new(interest, fd as u64))
        {
            config.log(format_args!("{peer}: cannot register: {e}"));
            return;
        }
        config.log(format_args!("{peer}: connected"));
        self.conns.insert(
            fd,
            Conn {
                stream,
                peer,
                echo: Echo::new(),
                interest,
            },
        );
    }

    fn on_ready(&mut self, fd: RawFd, events: EpollFlags, config: &Config) {
        // Absent if it was closed earlier in this batch.
        let Some(conn) = self.conns.get_mut(&fd) else {
            return;
        };
        let outcome = conn.on_ready(events, &mut self.scratch);
        let result = match outcome {
            Ok(false) => {
                let wanted = conn.wanted_interest();
                if wanted == conn.interest {
                    return;
                }
                conn.interest = wanted;
                let mut event = EpollEvent::new(wanted, fd as u64);
                match self.epoll.modify(&conn.stream, &mut event) {
                    Ok(()) => return,
                    Err(e) => Err(io::Error::from(e)),
                }
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
        // No EPOLL_CTL_DEL: closing the last descriptor of a socket removes
        // it from every epoll set, which happens when `closing` is cleared.
        self.closing.push(conn);
    }
}

/// Serves every client from this one thread until shutdown is requested and
/// the open connections have finished.
pub fn serve(listener: TcpListener, config: &Config, _flags: NoFlags) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    epoll.add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))?;
    epoll.add(
        config.shutdown.fd(),
        EpollEvent::new(EpollFlags::EPOLLIN, SHUTDOWN),
    )?;
    let mut listener = Some(listener);
    let mut spare = Spare::new()?;
    let mut clients = Clients {
        epoll,
        conns: HashMap::new(),
        closing: Vec::new(),
        scratch: vec![0; READ_CHUNK],
    };
    let mut events = vec![EpollEvent::empty(); MAX_EVENTS];

    // ANCHOR: event-loop
    while listener.is_some() || !clients.conns.is_empty() {
        let ready = match clients.epoll.wait(&mut events, EpollTimeout::NONE) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        for event in &events[..ready] {
            match event.data() {
                LISTENER => {
                    if let Some(l) = &listener {
                        accept_batch(l, &mut spare, &mut clients, config);
                    }
                }
                SHUTDOWN => {
                    // The eventfd stays readable; level-triggered epoll would
                    // report it on every wait, so it goes out of the set.
                    let _ = clients.epoll.delete(config.shutdown.fd());
                    if let Some(l) = listener.take() {
                        let _ = clients.epoll.delete(&l);
                        config.log(format_args!(
                            "shutdown requested: no longer accepting, {} connections open",
                            clients.conns.len()
                        ));
                    }
                }
                token => clients.on_ready(token as RawFd, event.events(), config),
            }
        }
        clients.closing.clear();
    }
    // ANCHOR_END: event-loop
    config.log(format_args!("shutdown: all connections closed"));
    Ok(())
}

/// Accepts until the backlog is empty or [`ACCEPT_BATCH`] is reached.
/// Out of descriptors, [`accept_one`] sheds the connection with the spare
/// descriptor: level-triggered epoll would otherwise report the listener
/// on every wait, and the loop would spin at 100 % CPU.
fn accept_batch(listener: &TcpListener, spare: &mut Spare, clients: &mut Clients, config: &Config) {
    for _ in 0..ACCEPT_BATCH {
        match accept_one(listener, spare) {
            Accepted::Client(stream, peer) => clients.admit(stream, peer, config),
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
