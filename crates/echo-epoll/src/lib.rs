//! The epoll echo server: non-blocking sockets and an `epoll(7)` instance
//! that says which of them are ready; level-triggered by default,
//! edge-triggered with `--edge-triggered`, one reactor (a thread with its
//! own epoll instance, listener and connections) by default, N with
//! `--threads N`.
//!
//! Run with `cargo run -p echo-epoll -- --addr 127.0.0.1:7000`, then
//! connect as many `nc 127.0.0.1 7000` as you like: one thread serves all.
//!
//! # Syscalls
//!
//! `epoll_create1(2)` once per reactor; `epoll_ctl(2)` to register the
//! listener, the shutdown eventfd and each client (`EPOLL_CTL_ADD`), and,
//! level-triggered, to change a client's interest (`EPOLL_CTL_MOD`) only
//! when it changes; `epoll_wait(2)` to sleep until something is ready.
//! Sockets are made non-blocking with `ioctl(FIONBIO)` (std's
//! `set_nonblocking`), so `accept4(2)`, `read(2)` and `write(2)` return
//! `EAGAIN` instead of blocking. `open(2)` of `/dev/null` keeps a spare
//! descriptor for `EMFILE`. With `--threads N`, `setsockopt(SO_REUSEPORT)`
//! and N-1 more `bind(2)`/`listen(2)` give each reactor a listener.
//!
//! # Trade-offs
//!
//! Good at: many connections, most of them idle. An idle client costs a
//! descriptor and a small struct, not a thread; `epoll_wait` returns only
//! the ready descriptors, so a wake-up costs O(ready), not O(connections)
//! as with `select` or `poll`. There is no locking: one thread owns all
//! of a reactor's state, and reactors share only a connection counter.
//!
//! What it costs: the code is a state machine. Each connection keeps its
//! unsent output ([`OUTPUT_CAP`] bounds it: back-pressure must be written
//! by hand, by no longer asking for `EPOLLIN`), and every blocking step of
//! the iterative model becomes "try, and on `EAGAIN` come back later".
//! One reactor uses one core: anything slow in the loop (a long
//! computation, a blocking call) delays every client of that reactor.
//!
//! Level-triggered mode is the forgiving one: whatever we leave unread is
//! reported again on the next wait, so we can read a bounded amount per
//! wake-up for fairness, and forgetting something costs a wake-up, not a
//! client. Edge-triggered mode (`EPOLLET`) reports a socket only when its
//! state changes, so it saves the `EPOLL_CTL_MOD` calls and the repeated
//! reports, but every bug becomes a hang: a socket not drained until
//! `EAGAIN` is never reported again for the bytes it still holds, a
//! connection we stopped reading at the output cap must be resumed by
//! ourselves when its output drains, and the fairness bound leaves a
//! connection with unread bytes that we must remember ourselves (the
//! `again` list, served before the next wait, which then does not sleep).
//!
//! `--threads N` runs N reactors, each with its own `SO_REUSEPORT`
//! listener: the kernel hashes each new connection to one of them, so
//! reactors never contend for a listener, but a reactor with busy clients
//! keeps receiving new ones (see [`serve`] for the alternative, one shared
//! listener registered with `EPOLLEXCLUSIVE`).
//!
//! # What the benchmark shows
//!
//! Memory and context switches stay flat from ten to thousands of
//! connections, and idle connections cost no CPU. Throughput is capped by
//! the one core a reactor runs on: several reactors, or a multi-threaded
//! design, overtake one once several busy clients could use several cores.
//! Edge-triggered mode is not cheaper for small echoes: nearly every turn
//! ends with a read that finds `EAGAIN`, up to one system call per echo
//! more than level-triggered, and small echoes never fill a send buffer, so
//! there is no `EPOLL_CTL_MOD` to save (notes/model-epoll.md counts them).

#![warn(missing_docs)]

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;
use echo_protocol::nonblocking::{Accepted, Echo, Read, Spare, accept_one};
use echo_protocol::{ACCEPT_BACKOFF, Config, Model};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// This model, as the contract sees it: it meets every conformance case.
pub const MODEL: Model = Model {
    name: "echo-epoll",
    expected_limits: &[],
};

pub use echo_protocol::nonblocking::{OUTPUT_CAP, READ_CHUNK};

/// The model's own flags.
#[derive(Debug, Clone, Copy, Args)]
pub struct Flags {
    /// Register sockets edge-triggered (EPOLLET): drain each until EAGAIN,
    /// at most 16 reads per connection per wake-up
    #[arg(long)]
    pub edge_triggered: bool,
    /// Reactors: threads, each with its own epoll instance, its own
    /// SO_REUSEPORT listener and its own connections
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: u32,
}

/// Most connections accepted per wake-up, so that a flood of new clients
/// cannot delay the ones already connected.
const ACCEPT_BATCH: usize = 64;

/// Edge-triggered only: most reads from one connection per turn, 16 ×
/// [`READ_CHUNK`] = 1 MiB. Draining until `EAGAIN` with no bound would let
/// one client that sends as fast as we read keep the loop to itself.
const READS_PER_TURN: usize = 16;

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
    /// Edge-triggered only: on the reactor's `again` list.
    queued: bool,
}

/// What an edge-triggered turn left behind.
enum Turn {
    /// Drained (`EAGAIN`), or stopped at the output cap with a write that
    /// hit `EAGAIN`: an edge will come when there is something to do.
    Wait,
    /// Stopped by [`READS_PER_TURN`] with bytes possibly still unread: no
    /// edge will announce them, so the reactor must come back by itself.
    Again,
    /// Client half-closed and everything was echoed; our side is shut.
    Done,
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

    // ANCHOR: edge
    /// Handles one edge-triggered report, or a turn from the `again` list
    /// (with no `events`).
    ///
    /// An edge says "something changed", once. So read until `EAGAIN`:
    /// bytes left in the socket are never reported again unless the client
    /// sends more, and a client waiting for its echo sends nothing more.
    /// The same holds for the output cap: once reading stops there, the
    /// only edge left is `EPOLLOUT` when the client reads its echo, and
    /// this same function then resumes reading. Registering `EPOLLOUT` for
    /// good costs nothing under ET: TCP reports writability only after a
    /// write has hit `EAGAIN`.
    fn on_edge(&mut self, events: EpollFlags, scratch: &mut [u8]) -> io::Result<Turn> {
        if events.intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP) {
            let err = self.stream.take_error()?;
            return Err(err.unwrap_or_else(|| ErrorKind::ConnectionReset.into()));
        }
        let mut reads = 0;
        loop {
            // Write after every read: the output stays small, and the cap
            // is reached only by a client that does not read.
            if self.echo.wants_write() {
                self.echo.flush_to(&mut self.stream)?;
            }
            if self.echo.done() {
                self.stream.shutdown(Shutdown::Write)?;
                return Ok(Turn::Done);
            }
            // Half-closed with output left, or output past the cap: in
            // both cases the write above hit EAGAIN, so EPOLLOUT will come.
            if !self.echo.wants_read() {
                return Ok(Turn::Wait);
            }
            if reads == READS_PER_TURN {
                return Ok(Turn::Again);
            }
            reads += 1;
            if self.echo.read_from(&mut self.stream, scratch)? == Read::WouldBlock {
                return Ok(Turn::Wait);
            }
        }
    }
    // ANCHOR_END: edge
}

/// What the last accept left in the listener's backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backlog {
    /// Nothing, or nothing we must come back for by ourselves.
    Empty,
    /// Edge-triggered only: stopped at [`ACCEPT_BATCH`]; no edge will
    /// announce the rest.
    More,
    /// Stopped by a shortage ([`Accepted::Later`]): the listener is left
    /// alone until then. Level-triggered epoll would report it at once,
    /// for ever: a spin. With several reactors this is not rare: they
    /// share one descriptor table, so another reactor's `accept` can take
    /// the descriptor our spare just gave up, and we are left without one
    /// until some connection closes.
    Later(Instant),
}

/// One reactor: its epoll instance, its connections and the loop's
/// reusable buffers.
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
    /// Connections open in *all* reactors: `--max-conns` limits the
    /// process, and the kernel's hash decides which reactor gets a client.
    open: Arc<AtomicUsize>,
    /// Prefix of this reactor's log lines ("" with one reactor).
    tag: String,
    /// `--edge-triggered`.
    edge: bool,
    /// Edge-triggered only: connections cut short by [`READS_PER_TURN`],
    /// to be served again before the next wait.
    again: Vec<RawFd>,
    /// The listener as the last accept left it.
    backlog: Backlog,
}

impl Clients {
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr, config: &Config) {
        let tag = &self.tag;
        // Counted first, so two reactors admitting at once cannot both take
        // the last place; the loser gives its count back.
        if self.open.fetch_add(1, Ordering::Relaxed) >= config.max_conns {
            self.open.fetch_sub(1, Ordering::Relaxed);
            config.log(format_args!(
                "{tag}{peer}: refused, {} connections open",
                config.max_conns
            ));
            return;
        }
        if let Err(e) = stream.set_nonblocking(true) {
            self.open.fetch_sub(1, Ordering::Relaxed);
            config.log(format_args!("{tag}{peer}: cannot make non-blocking: {e}"));
            return;
        }
        let fd = stream.as_raw_fd();
        // Edge-triggered: both directions once, for good. Bytes that
        // arrived before this call are not lost: EPOLL_CTL_ADD looks at
        // the socket's current state and reports it if ready.
        let interest = if self.edge {
            EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLET
        } else {
            EpollFlags::EPOLLIN
        };
        if let Err(e) = self
            .epoll
            .add(&stream, EpollEvent::new(interest, fd as u64))
        {
            self.open.fetch_sub(1, Ordering::Relaxed);
            config.log(format_args!("{tag}{peer}: cannot register: {e}"));
            return;
        }
        config.log(format_args!("{tag}{peer}: connected"));
        self.conns.insert(
            fd,
            Conn {
                stream,
                peer,
                echo: Echo::new(),
                interest,
                queued: false,
            },
        );
    }

    fn on_ready(&mut self, fd: RawFd, events: EpollFlags, config: &Config) {
        // Absent if it was closed earlier in this batch.
        let Some(conn) = self.conns.get_mut(&fd) else {
            return;
        };
        let result = if self.edge {
            match conn.on_edge(events, &mut self.scratch) {
                Ok(Turn::Wait) => return,
                Ok(Turn::Again) => {
                    if !conn.queued {
                        conn.queued = true;
                        self.again.push(fd);
                    }
                    return;
                }
                Ok(Turn::Done) => Ok(()),
                Err(e) => Err(e),
            }
        } else {
            match conn.on_ready(events, &mut self.scratch) {
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
            }
        };
        self.close(fd, result, config);
    }

    fn close(&mut self, fd: RawFd, result: io::Result<()>, config: &Config) {
        let Some(conn) = self.conns.remove(&fd) else {
            return;
        };
        if conn.queued {
            self.again.retain(|&queued| queued != fd);
        }
        self.open.fetch_sub(1, Ordering::Relaxed);
        let tag = &self.tag;
        match result {
            Ok(()) => config.log(format_args!(
                "{tag}{}: closed after {} bytes",
                conn.peer,
                conn.echo.echoed()
            )),
            Err(e) => config.log(format_args!("{tag}{}: {e}", conn.peer)),
        }
        // No EPOLL_CTL_DEL: closing the last descriptor of a socket removes
        // it from every epoll set, which happens when `closing` is cleared.
        self.closing.push(conn);
    }

    /// Edge-triggered only (else the list is empty): one more turn for
    /// each connection the fairness bound cut short. Level-triggered epoll would report them again by
    /// itself; under ET nothing will, and a client waiting for its echo
    /// would wait forever.
    fn serve_again(&mut self, config: &Config) {
        for fd in std::mem::take(&mut self.again) {
            if let Some(conn) = self.conns.get_mut(&fd) {
                conn.queued = false;
                self.on_ready(fd, EpollFlags::empty(), config);
            }
        }
    }

    /// Accepts a batch and records what it left.
    fn accept(&mut self, listener: &TcpListener, spare: &mut Spare, config: &Config) {
        self.backlog = match accept_batch(listener, spare, self, config) {
            // Level-triggered epoll reports the listener again by itself.
            Backlog::More if !self.edge => Backlog::Empty,
            Backlog::Later(until) => {
                if !self.edge {
                    // Still registered, but asking for nothing.
                    let mut off = EpollEvent::new(EpollFlags::empty(), LISTENER);
                    let _ = self.epoll.modify(listener, &mut off);
                }
                Backlog::Later(until)
            }
            other => other,
        };
    }

    /// Accepts again what no event will report: the rest of a batch
    /// (edge-triggered), or a backlog left for a shortage, once its pause
    /// is over.
    fn accept_again(&mut self, listener: &TcpListener, spare: &mut Spare, config: &Config) {
        match self.backlog {
            Backlog::More => self.accept(listener, spare, config),
            Backlog::Later(until) if Instant::now() >= until => {
                if !self.edge {
                    let mut on = EpollEvent::new(EpollFlags::EPOLLIN, LISTENER);
                    let _ = self.epoll.modify(listener, &mut on);
                }
                self.accept(listener, spare, config);
            }
            Backlog::Empty | Backlog::Later(_) => {}
        }
    }

    /// How long the next `epoll_wait` may sleep: not at all while work no
    /// edge will announce is left (edge-triggered), until the end of an
    /// accept pause, else until an event.
    fn timeout(&self) -> EpollTimeout {
        if !self.again.is_empty() || self.backlog == Backlog::More {
            return EpollTimeout::ZERO;
        }
        match self.backlog {
            // Rounded up: epoll_wait counts whole milliseconds, and waking
            // early would only find the pause not yet over.
            Backlog::Later(until) => {
                let left = until.saturating_duration_since(Instant::now());
                EpollTimeout::try_from(left + Duration::from_millis(1)).unwrap_or(EpollTimeout::MAX)
            }
            Backlog::Empty | Backlog::More => EpollTimeout::NONE,
        }
    }
}

/// Serves every client until shutdown is requested and the open
/// connections have finished: on this thread with one reactor, else on
/// `flags.threads` threads, one reactor each.
///
/// Each reactor has its own `SO_REUSEPORT` listener, and the kernel picks
/// the listener of a new connection by a hash of its addresses and ports.
/// The alternative not taken: one listener registered in every reactor's
/// epoll with `EPOLLEXCLUSIVE`, which wakes one waiting reactor (or a few)
/// per connection instead of all. It adapts to load (only an idle reactor
/// is waiting), but the kernel wakes waiters in a fixed order, so the same
/// idle reactor tends to take every new client; it keeps one accept queue
/// (no connection lost when one reactor stops listening); and under LT
/// the woken reactor must accept before the others are woken for the same
/// backlog. `SO_REUSEPORT` spreads new clients evenly whatever the load and
/// needs no shared wait queue; its risk is a reactor whose clients are
/// busy receiving its share of new clients all the same.
pub fn serve(listener: TcpListener, config: &Config, flags: Flags) -> io::Result<()> {
    let open = Arc::new(AtomicUsize::new(0));
    let n = flags.threads as usize;
    let edge = flags.edge_triggered;
    if n == 1 {
        return Reactor::new(listener, config, edge, open, String::new())?.run(config);
    }
    let mut reactors = Vec::with_capacity(n);
    for (i, listener) in echo_protocol::reuseport_group(listener, config.addr, n)?
        .into_iter()
        .enumerate()
    {
        let tag = format!("reactor {i}: ");
        reactors.push(Reactor::new(
            listener,
            config,
            edge,
            Arc::clone(&open),
            tag,
        )?);
    }
    // The readiness line came before the group existed: clients that
    // connected in between all wait in slot 0's queue, for reactor 0 (none
    // is lost). From here on the kernel spreads them.
    config.log(format_args!(
        "{n} reactors, each on its own SO_REUSEPORT listener"
    ));
    let (done, finished) = mpsc::channel();
    for (i, reactor) in reactors.into_iter().enumerate() {
        let (config, done) = (config.clone(), done.clone());
        std::thread::Builder::new()
            .name(format!("reactor-{i}"))
            .spawn(move || {
                let _ = done.send(reactor.run(&config));
            })?;
    }
    drop(done);
    // The first reactor that fails ends the process (exit status 1), rather
    // than leaving its share of the port to the others unannounced.
    for _ in 0..n {
        match finished.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(mpsc::RecvError) => return Err(io::Error::other("a reactor panicked")),
        }
    }
    Ok(())
}

/// One reactor: a listener, the spare descriptor for it, the connections.
struct Reactor {
    listener: Option<TcpListener>,
    spare: Spare,
    clients: Clients,
}

impl Reactor {
    /// Everything a reactor needs before its first connection. All reactors
    /// are built before any runs: the port is already announced, and a
    /// running reactor could take the last descriptors of the process
    /// before the next one has its epoll instance or its spare.
    fn new(
        listener: TcpListener,
        config: &Config,
        edge: bool,
        open: Arc<AtomicUsize>,
        tag: String,
    ) -> io::Result<Reactor> {
        listener.set_nonblocking(true)?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let accept_on = if edge {
            EpollFlags::EPOLLIN | EpollFlags::EPOLLET
        } else {
            EpollFlags::EPOLLIN
        };
        epoll.add(&listener, EpollEvent::new(accept_on, LISTENER))?;
        // Level-triggered in both modes: it is seen once and removed.
        epoll.add(
            config.shutdown.fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, SHUTDOWN),
        )?;
        Ok(Reactor {
            listener: Some(listener),
            spare: Spare::new()?,
            clients: Clients {
                epoll,
                conns: HashMap::new(),
                closing: Vec::new(),
                scratch: vec![0; READ_CHUNK],
                open,
                tag,
                edge,
                again: Vec::new(),
                backlog: Backlog::Empty,
            },
        })
    }

    /// The loop, until shutdown is requested and the last client is gone.
    fn run(self, config: &Config) -> io::Result<()> {
        let Reactor {
            mut listener,
            mut spare,
            mut clients,
        } = self;
        let mut events = vec![EpollEvent::empty(); MAX_EVENTS];

        // ANCHOR: event-loop
        while listener.is_some() || !clients.conns.is_empty() {
            let ready = match clients.epoll.wait(&mut events, clients.timeout()) {
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            };
            for event in &events[..ready] {
                match event.data() {
                    LISTENER => {
                        if let Some(l) = &listener {
                            clients.accept(l, &mut spare, config);
                        }
                    }
                    SHUTDOWN => {
                        // The eventfd stays readable; level-triggered epoll would
                        // report it on every wait, so it goes out of the set.
                        let _ = clients.epoll.delete(config.shutdown.fd());
                        if let Some(l) = listener.take() {
                            let _ = clients.epoll.delete(&l);
                            clients.backlog = Backlog::Empty;
                            config.log(format_args!(
                                "{}shutdown requested: no longer accepting, {} connections open",
                                clients.tag,
                                clients.conns.len()
                            ));
                        }
                    }
                    token => clients.on_ready(token as RawFd, event.events(), config),
                }
            }
            // What no event will report again (both empty unless
            // edge-triggered, or short of descriptors).
            if let Some(l) = &listener {
                clients.accept_again(l, &mut spare, config);
            }
            clients.serve_again(config);
            clients.closing.clear();
        }
        // ANCHOR_END: event-loop
        config.log(format_args!(
            "{}shutdown: all connections closed",
            clients.tag
        ));
        Ok(())
    }
}

/// Accepts until the backlog is empty or [`ACCEPT_BATCH`] is reached.
/// Out of descriptors, [`accept_one`] sheds the connection with the spare
/// descriptor: level-triggered epoll would otherwise report the listener
/// on every wait, and the loop would spin at 100 % CPU. Edge-triggered, a
/// backlog left non-empty is not reported again until the next connection
/// arrives, hence the [`Backlog`] returned.
fn accept_batch(
    listener: &TcpListener,
    spare: &mut Spare,
    clients: &mut Clients,
    config: &Config,
) -> Backlog {
    for _ in 0..ACCEPT_BATCH {
        match accept_one(listener, spare) {
            Accepted::Client(stream, peer) => clients.admit(stream, peer, config),
            Accepted::Empty => return Backlog::Empty,
            Accepted::Skipped(e) => config.log(format_args!("{}accept: {e}", clients.tag)),
            // Nothing to free here: serve the connections we have and
            // retry after a pause, long next to an accept, short next to
            // the time a client takes to leave.
            Accepted::Later(e) => {
                config.log(format_args!("{}accept: {e}", clients.tag));
                return Backlog::Later(Instant::now() + ACCEPT_BACKOFF);
            }
        }
    }
    Backlog::More
}
