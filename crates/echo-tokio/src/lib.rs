//! The tokio echo server: a task per connection, written as straight-line
//! `async` code, on tokio's runtime. What the seeds show with Python's
//! `asyncio` (an event loop, coroutines, `await` where a blocking server
//! would block), in Rust's most used runtime.
//!
//! Run with `cargo run -p echo-tokio -- --addr 127.0.0.1:7000` (one thread
//! for everything), or add `--flavor multi-thread --workers 2` (a pool of
//! worker threads that steal tasks from each other).
//!
//! # Syscalls
//!
//! tokio's reactor is mio, so on Linux `epoll(7)`: `epoll_create1(2)` when
//! the runtime is built, `epoll_ctl(2)` (`EPOLLET`) when a socket is wrapped
//! in [`AsyncFd`] and again when it is dropped, `epoll_wait(2)` when every
//! task is waiting; an `eventfd(2)` wakes a parked thread (the other
//! workers, in the multi-thread flavour). The sockets are non-blocking, so
//! `accept4(2)`, `read(2)` and `write(2)` answer `EAGAIN` instead of
//! waiting; `shutdown(2)` half-closes after the last echoed byte; `open(2)`
//! of `/dev/null` keeps a spare descriptor for `EMFILE`.
//!
//! # What tokio adds to the epoll loop
//!
//! The loop itself (`echo-epoll`'s `epoll_wait` and its dispatch on the
//! descriptor) is tokio's, and so is the table of connections: each
//! connection is a task, its state the local variables of `echo` kept
//! across `.await`. A task that waits is parked on its socket's readiness
//! and woken by the reactor; what the readiness models keep by hand (an
//! `unread` flag, a ready list) is tokio's readiness cache, cleared only
//! when we say the socket answered `EAGAIN`. Fairness is tokio's
//! cooperative budget: a task that keeps finding its socket ready is made
//! to yield after 128 operations, where `echo-epoll` gives one read per
//! turn. The multi-thread flavour adds work stealing: an idle worker takes
//! tasks from a busy one's queue, so connections need not be dealt to
//! threads in advance as `echo-epoll --threads` does with `SO_REUSEPORT`.
//! Timers come with the runtime (used here for one pause, see
//! [`ACCEPT_BACKOFF`]).
//!
//! # How the bytes move, and why not `tokio::io::copy`
//!
//! Each socket is a std socket inside an [`AsyncFd`], the layer
//! `tokio::net` is built on, so that the bytes move through
//! [`echo_protocol::nonblocking::Echo`] exactly as in every readiness
//! model: one read, appended to what is unsent (bounded by
//! [`OUTPUT_CAP`]), then write until `EAGAIN`. Not taken:
//! `tokio::net::TcpStream` with `read` then `write_all` on a buffer, or
//! `tokio::io::copy` between its halves. Both are bounded too (the buffer,
//! 8 KiB for `copy`), but the buffer belongs to the task and lives as long
//! as the connection, idle or not: at 10,000 connections, 80 MiB for
//! `copy`'s, 640 MiB for a 64 KiB one. Here the 64 KiB read buffer is one
//! per thread (`SCRATCH`): a read and the copy into `Echo` never cross
//! an `.await`, so no task needs its own, and an idle connection costs its
//! task and an empty `Echo`.
//!
//! # Trade-offs
//!
//! Code that reads as if blocking, and a task per connection (one heap
//! allocation holding the state of `echo`) instead of a thread and its
//! stack. In exchange, anything
//! slow between two `.await`s stalls every task of that thread (all of them
//! in the current-thread flavour), and a task that never awaits is never
//! preempted. The current-thread flavour uses one core and takes no locks
//! to schedule; the multi-thread flavour uses several, at the price of
//! cross-thread wake-ups and atomic queues.

#![warn(missing_docs)]

use std::cell::RefCell;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::num::NonZeroU16;
use std::sync::Arc;

use clap::{ArgMatches, Command, FromArgMatches};
use echo_protocol::nonblocking::{self, Accepted, Echo, Read, Spare, accept_one};
use echo_protocol::{ACCEPT_BACKOFF, Config, Model};
use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, Ready};
use tokio::runtime::{Builder, Runtime};
use tokio::task::JoinSet;

pub use echo_protocol::nonblocking::{OUTPUT_CAP, READ_CHUNK};

/// This model, as the contract sees it: it meets every conformance case.
pub const MODEL: Model = Model {
    name: "echo-tokio",
    expected_limits: &[],
};

/// Most connections accepted before the accept loop lets the connection
/// tasks run, so that a flood of new clients cannot delay the ones already
/// connected.
const ACCEPT_BATCH: usize = 64;

/// Which of tokio's schedulers runs the tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Flavor {
    /// One thread runs every task and polls the reactor: no locks, one core.
    CurrentThread,
    /// A pool of workers, each with its own run queue; an idle one steals
    /// from the others.
    MultiThread,
}

/// The model's own flags, as parsed.
#[derive(Debug, Clone, clap::Args)]
struct RawFlags {
    /// Runtime flavour: one thread for all tasks, or a work-stealing pool
    #[arg(long, value_enum, default_value_t = Flavor::CurrentThread)]
    flavor: Flavor,
    /// Worker threads of the multi-thread flavour [default: one per CPU]
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,
}

/// `--flavor` and `--workers`, checked together: `--workers` means nothing
/// to the current-thread flavour, so it is refused there rather than
/// silently ignored. (clap can make a flag require another flag, not
/// another flag's value; hence this check after parsing.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    /// The scheduler.
    pub flavor: Flavor,
    /// Workers of the multi-thread flavour; `None` is tokio's default,
    /// one per CPU.
    pub workers: Option<NonZeroU16>,
}

impl FromArgMatches for Flags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let raw = RawFlags::from_arg_matches(matches)?;
        if let (Flavor::CurrentThread, Some(n)) = (raw.flavor, raw.workers) {
            return Err(clap::Error::raw(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "'--workers {n}' needs '--flavor multi-thread' \
                     (the current-thread flavour has one thread)\n"
                ),
            ));
        }
        Ok(Flags {
            flavor: raw.flavor,
            workers: raw.workers.and_then(NonZeroU16::new),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Flags::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for Flags {
    fn augment_args(cmd: Command) -> Command {
        RawFlags::augment_args(cmd)
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        RawFlags::augment_args_for_update(cmd)
    }
}

/// Builds the runtime the flags ask for, with the reactor (`enable_io`)
/// and the timer wheel (`enable_time`).
fn runtime(flags: Flags) -> io::Result<Runtime> {
    let mut builder = match flags.flavor {
        Flavor::CurrentThread => Builder::new_current_thread(),
        Flavor::MultiThread => Builder::new_multi_thread(),
    };
    if let Some(n) = flags.workers {
        builder.worker_threads(n.get().into());
    }
    builder
        .thread_name("echo-tokio-worker")
        .enable_io()
        .enable_time()
        .build()
}

/// Serves every client on a tokio runtime until shutdown is requested and
/// the open connections have finished.
pub fn serve(listener: TcpListener, config: &Config, flags: Flags) -> io::Result<()> {
    // `block_on` runs the accept loop on this thread. In the current-thread
    // flavour the connection tasks run here too, between its awaits; in
    // the multi-thread flavour they run on the workers, and this thread
    // only accepts.
    runtime(flags)?.block_on(accept_loop(listener, Arc::new(config.clone())))
}

// ANCHOR: accept-loop
/// Accepts clients and spawns a task for each, until the shutdown eventfd
/// is readable; then closes the listener and waits for the tasks.
async fn accept_loop(listener: TcpListener, config: Arc<Config>) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    // A std listener in an `AsyncFd` rather than `tokio::net::TcpListener`:
    // `accept_one` (shared with the readiness models) sheds connections on
    // `EMFILE` with a spare descriptor. tokio's `accept` returns `EMFILE`
    // and leaves the connection in the backlog, so a loop that logs and
    // accepts again spins at 100 % CPU, and the client hangs.
    // SAFETY: the `AsyncFd` owns the listener, whose descriptor stays open
    // and the same until the `AsyncFd` is dropped (tokio's `register`
    // contract; `new` is deprecated for want of exactly this promise).
    let listener = unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE)? };
    // The contract's eventfd, registered like any descriptor (tokio's own
    // `tokio::signal` would need the signals unblocked, and the contract
    // keeps them blocked for its `sigwait` thread). It stays readable once
    // signalled, so the `readable()` below stays ready.
    // `config` keeps the eventfd open until after this function returns.
    let shutdown_fd = config.shutdown.fd();
    // SAFETY: a `BorrowedFd` is open for its whole lifetime, which the
    // `AsyncFd` holding it cannot outlive.
    let shutdown = unsafe { AsyncFd::register_with_interest(shutdown_fd, Interest::READABLE)? };
    let mut spare = Spare::new()?;
    // The open connections: the count for `--max-conns` and, at shutdown,
    // what to wait for.
    let mut conns = JoinSet::new();

    loop {
        let mut guard = tokio::select! {
            // Shutdown first: the contract pokes the listener with a
            // connection at the same moment, which must not be served.
            biased;
            _ = shutdown.readable() => break,
            guard = listener.readable() => guard?,
        };
        let mut full_batch = true;
        for _ in 0..ACCEPT_BATCH {
            match accept_one(guard.get_inner(), &mut spare) {
                Accepted::Client(stream, peer) => {
                    reap(&mut conns, &config);
                    let open = conns.len();
                    if let Some(stream) = nonblocking::admit(stream, peer, open, &config) {
                        spawn(&mut conns, stream, peer, &config);
                    }
                }
                Accepted::Empty => {
                    // `EAGAIN`: only now may tokio forget that the listener
                    // was ready; the next connection brings a new event.
                    guard.clear_ready();
                    full_batch = false;
                    break;
                }
                Accepted::Skipped(e) => config.log(format_args!("accept: {e}")),
                // Out of memory or of a spare descriptor: no event will say
                // when to retry, and retrying at once would spin. The
                // readiness is kept, so the loop retries after the pause.
                Accepted::Later(e) => {
                    config.log(format_args!("accept: {e}"));
                    drop(guard);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    full_batch = false;
                    break;
                }
            }
        }
        // After a full batch the listener is still marked ready, and
        // `readable()` would return at once: yield first, so that the
        // connection tasks run before the next batch.
        if full_batch {
            tokio::task::yield_now().await;
        }
    }

    // Closing the listener refuses new clients (and resets the contract's
    // wake-up connection, still in the backlog).
    drop(listener);
    config.log(format_args!(
        "shutdown requested: no longer accepting, {} connections open",
        conns.len()
    ));
    // The contract's shutdown thread ends the process after its grace
    // period if a client never finishes; nothing to time out here.
    while let Some(done) = conns.join_next().await {
        log_join(done, &config);
    }
    config.log(format_args!("shutdown: all connections closed"));
    Ok(())
}
// ANCHOR_END: accept-loop

/// Collects the tasks that have finished, so that `conns.len()` counts
/// open connections only.
fn reap(conns: &mut JoinSet<()>, config: &Config) {
    while let Some(done) = conns.try_join_next() {
        log_join(done, config);
    }
}

/// A task that panicked has closed its connection (its socket was dropped
/// as it unwound; the panic hook has printed why); the others go on.
fn log_join(done: Result<(), tokio::task::JoinError>, config: &Config) {
    if let Err(e) = done {
        config.log(format_args!("a connection task failed: {e}"));
    }
}

/// Registers the client with the reactor and spawns its task.
fn spawn(conns: &mut JoinSet<()>, stream: TcpStream, peer: SocketAddr, config: &Arc<Config>) {
    // SAFETY: the `AsyncFd` owns the stream, whose descriptor stays open
    // and the same until the task drops it or takes it back (`into_inner`).
    let socket = match unsafe { AsyncFd::register(stream) } {
        Ok(s) => s,
        Err(e) => {
            config.log(format_args!("{peer}: cannot register: {e}"));
            return;
        }
    };
    let config = Arc::clone(config);
    conns.spawn(async move {
        match echo(socket).await {
            Ok(n) => config.log(format_args!("{peer}: closed after {n} bytes")),
            Err(e) => config.log(format_args!("{peer}: {e}")),
        }
    });
}

thread_local! {
    /// The read buffer, one per thread that runs tasks. A task borrows it
    /// for one `read` and the copy into its `Echo`, with no `.await` in
    /// between, so no other task can find it borrowed.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

// ANCHOR: echo
/// One connection's task: wait for the readiness the echo needs, read once,
/// write until `EAGAIN`, until the client has half-closed and everything
/// is written back; then half-close. Returns the bytes echoed.
async fn echo(socket: AsyncFd<TcpStream>) -> io::Result<u64> {
    let mut echo = Echo::new();
    loop {
        // Back-pressure: past OUTPUT_CAP unsent, wait for writability only.
        // Neither wanted means the client half-closed and all was sent.
        let interest = match (echo.wants_read(), echo.wants_write()) {
            (true, true) => Interest::READABLE | Interest::WRITABLE,
            (true, false) => Interest::READABLE,
            (false, true) => Interest::WRITABLE,
            (false, false) => break,
        };
        // Returns at once while tokio still believes the socket ready
        // (nothing answered EAGAIN since the last event); each such return
        // spends the task's cooperative budget, so a client that keeps its
        // socket full cannot keep this thread from the others.
        let mut guard = socket.ready(interest).await?;
        // `is_readable` includes a FIN (read closed): the read says EOF.
        if echo.wants_read() && guard.ready().is_readable() {
            let read = SCRATCH
                .with_borrow_mut(|scratch| echo.read_from(&mut guard.get_inner(), scratch))?;
            match read {
                // A full buffer: there may be more, keep the readiness.
                Read::Data(n) if n == READ_CHUNK => {}
                // A short read emptied the socket: forget the readiness
                // without the `read` that would answer EAGAIN. Safe with
                // epoll: new bytes bring a new edge, and tokio keeps
                // readiness that arrived after this guard was taken. The
                // same shortcut as tokio's own `AsyncRead` for `TcpStream`
                // (`echo-mio` does not take it, as mio does not promise it).
                Read::Data(_) | Read::WouldBlock => guard.clear_ready_matching(Ready::READABLE),
                Read::Eof => {}
            }
        }
        if echo.wants_write() {
            echo.flush_to(&mut guard.get_inner())?;
            if echo.wants_write() {
                // The socket is full (EAGAIN): wait for the next edge.
                guard.clear_ready_matching(Ready::WRITABLE);
            }
        }
    }
    // `into_inner` deregisters (what dropping the `AsyncFd` would do
    // anyway) and gives back the std socket to half-close.
    socket.into_inner().shutdown(Shutdown::Write)?;
    Ok(echo.echoed())
}
// ANCHOR_END: echo
