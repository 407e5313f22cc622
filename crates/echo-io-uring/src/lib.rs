//! The io_uring echo server: completion-based I/O. Instead of asking the
//! kernel which sockets are *ready* and then reading and writing them
//! ourselves (epoll and the other readiness models), we hand the kernel the
//! whole operation, "accept on this listener", "receive into this buffer",
//! "send these bytes", and later collect what *completed*, with its result.
//!
//! Run with `cargo run -p echo-io-uring -- --addr 127.0.0.1:7000`, then
//! connect as many `nc 127.0.0.1 7000` as you like: one thread serves all.
//!
//! # Syscalls
//!
//! `io_uring_setup(2)` once, which creates the ring: a submission queue
//! (SQ) and a completion queue (CQ) in memory shared with the kernel
//! (`mmap(2)`). Each operation is a submission queue entry (SQE):
//! `IORING_OP_ACCEPT` on the listener, `IORING_OP_RECV` and
//! `IORING_OP_SEND` on a client, `IORING_OP_POLL_ADD` on the shutdown
//! eventfd (and on the listener while out of descriptors),
//! `IORING_OP_TIMEOUT` for an accept pause, `IORING_OP_ASYNC_CANCEL` to
//! stop an operation. One `io_uring_enter(2)` per turn of the loop submits
//! every entry queued since the last turn and sleeps until at least one
//! completes; completion queue entries (CQEs) are then read from shared
//! memory with no syscall at all. `io_uring_register(2)` once for the
//! buffer ring (`pool.rs`). `shutdown(2)` and `close(2)` are plain calls,
//! made when nothing is in flight on the socket; `accept4(2)` and `open(2)`
//! of `/dev/null` only when out of descriptors (the spare-descriptor trick).
//!
//! # Two ways to receive
//!
//! By default, where the kernel has them (Linux 6.1), *multishot*
//! operations: one accept SQE yields a CQE per new client, and one recv SQE
//! per connection yields a CQE each time data arrives, into a buffer the
//! kernel picks from a shared pool of *provided buffers* (`pool.rs`). With
//! `--single-shot` (or on an older kernel), every accept and every recv is
//! its own SQE, and each connection receives into a buffer of its own.
//!
//! # Trade-offs
//!
//! Good at: few syscalls. A readiness loop makes one `epoll_wait` plus a
//! `read` and a `write` per echo; here a turn of the loop is one
//! `io_uring_enter`, however many receives and sends it submits and reaps.
//! The kernel copies straight into the buffer we send from: no scratch
//! buffer, no second copy into an output queue.
//!
//! What it costs: **buffer ownership**. From the moment a recv or send is
//! submitted until its completion is reaped, the kernel owns the memory
//! it points to: it may write into it (recv) or read it (send) at any
//! time, with no borrow checker to stop us. So a buffer cannot be a scratch
//! buffer shared by all connections (several receives are in flight at
//! once), cannot be freed when we decide to close a connection, and cannot
//! be received into again while a send from it is in flight. A connection
//! is closed only when none of its operations is in flight (a multishot
//! recv is cancelled first, and the connection closed on its last
//! completion); a pool buffer goes back to the kernel only once its bytes
//! were sent in full. The same holds for the listener: closing its
//! descriptor does not stop an accept already submitted (the ring holds its
//! own reference to the file), so shutdown cancels the accept and waits
//! for its last completion.
//!
//! Back-pressure: a connection has at most [`QUEUE_CAP`] received buffers
//! not yet sent back (one with `--single-shot`: it receives again only
//! once everything was sent); past that its multishot recv is cancelled,
//! and the kernel's socket buffers push back on the client. Sends go out
//! one at a time per connection, in order; a short send is resubmitted for
//! the rest from the same buffer.
//!
//! Memory: with `--single-shot`, one [`BUFFER_SIZE`] buffer per open
//! connection, busy or idle. With provided buffers, an idle connection
//! holds none: the pool is sized by the data in flight, and grows by a slab
//! when the kernel finds it empty (`ENOBUFS`). The price is a shared
//! resource: a connection can find the pool empty because of the others,
//! and must then wait for a buffer to come back.
//!
//! io_uring may be unavailable: a kernel built without it (`ENOSYS`),
//! `kernel.io_uring_disabled` set, or a seccomp filter (container runtimes)
//! that refuses `io_uring_setup` (`EPERM`). [`serve`] then fails with one
//! line and exit status 1.

#![warn(missing_docs)]

mod pool;

use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};

use clap::Args;
use echo_protocol::nonblocking::{Accepted, Spare, accept_one};
use echo_protocol::{ACCEPT_BACKOFF, Config, Model};
use io_uring::{IoUring, cqueue, opcode, squeue, types};

use pool::Pool;

/// This model, as the contract sees it: it meets every conformance case.
pub const MODEL: Model = Model {
    name: "echo-io-uring",
    expected_limits: &[],
};

/// The model's own flags.
#[derive(Debug, Clone, Copy, Args)]
pub struct Flags {
    /// One accept and one recv per SQE, each connection receiving into a
    /// buffer of its own (default where the kernel has them: multishot
    /// accept and recv from a pool of provided buffers)
    #[arg(long)]
    pub single_shot: bool,
}

/// Size of a receive buffer: a connection's own (`--single-shot`) or one of
/// the pool's. Smaller than the readiness models' 64 KiB read (a large
/// transfer takes more trips through the ring) because with
/// `--single-shot` every open connection holds one, idle or not.
pub const BUFFER_SIZE: usize = 16 * 1024;

/// Received buffers one connection may hold unsent before its multishot
/// recv is cancelled: 64 KiB. Not a hard bound: a multishot recv that
/// finds data waiting takes buffer after buffer in one go (the kernel
/// retries up to 32 times per wake-up), and the cancel takes effect only
/// at the next `io_uring_enter`, so a client that sends without reading
/// can pin some 36 buffers (under 600 KiB; the readiness models allow
/// 1 MiB). A single-shot recv per buffer would be exact, at the price of
/// a submission per receive.
pub const QUEUE_CAP: usize = 4;

/// Submission queue entries: the most operations queued between two
/// `io_uring_enter` calls before we must flush early. This bounds a batch,
/// not the operations in flight.
const SQ_ENTRIES: u32 = 512;

/// Completion queue entries. The kernel keeps completions that do not fit
/// (`IORING_FEAT_NODROP`) and hands them over on the next enter, so this
/// too only sizes a batch.
const CQ_ENTRIES: u32 = 4096;

/// Most clients the fallback accept (out of descriptors) takes per wake-up.
const ACCEPT_BATCH: usize = 64;

// ANCHOR: user-data
/// What an operation was, in the low byte of its `user_data`; the rest is
/// the connection's slot. The kernel returns `user_data` untouched in each
/// completion, and it is all we learn about which operation it belongs to.
const OP_BITS: u32 = 8;
const ACCEPT: u64 = 1;
const RECV: u64 = 2;
const SEND: u64 = 3;
/// The shutdown eventfd became readable.
const SHUTDOWN: u64 = 4;
/// The listener became readable (out of descriptors only).
const LISTEN_POLL: u64 = 5;
/// An accept pause is over.
const PAUSE: u64 = 6;
/// An `IORING_OP_ASYNC_CANCEL` finished (what it cancelled completes on
/// its own).
const CANCEL: u64 = 7;

fn user_data(op: u64, slot: usize) -> u64 {
    ((slot as u64) << OP_BITS) | op
}

fn op_of(user_data: u64) -> u64 {
    user_data & ((1 << OP_BITS) - 1)
}

fn slot_of(user_data: u64) -> usize {
    (user_data >> OP_BITS) as usize
}
// ANCHOR_END: user-data

/// Bytes received and not yet sent back: `len` bytes at the start of pool
/// buffer `bid`, or of the connection's own buffer when `bid` is `None`.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    bid: Option<u16>,
    len: usize,
}

/// Where a connection's receiving stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recv {
    /// Nothing in flight.
    Idle,
    /// A recv is in flight (multishot: armed, it may complete many times).
    Armed,
    /// A multishot recv we asked to cancel; in flight until its last CQE.
    Cancelling,
    /// The pool was empty and could not grow: waits for a buffer to come back.
    Starved,
}

/// One client.
struct Conn {
    stream: TcpStream,
    peer: Option<SocketAddr>,
    /// `--single-shot` only: the buffer this connection receives into.
    own: Option<Box<[u8]>>,
    /// Received and not yet sent back, in order; the front one is being
    /// sent from offset `sent`.
    unsent: VecDeque<Chunk>,
    sent: usize,
    echoed: u64,
    recv: Recv,
    /// A send of the front chunk is in flight.
    sending: bool,
    /// The client half-closed.
    eof: bool,
    /// The connection failed; it closes once nothing is in flight.
    failed: Option<io::Error>,
}

/// What the listener is waiting on: at most one operation of it is in
/// flight at any time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listening {
    /// An `IORING_OP_ACCEPT` is in flight (multishot or not): the normal state.
    Accept,
    /// Out of descriptors: an accept through the ring would fail with
    /// `EMFILE` at once (the kernel takes a descriptor before it looks at
    /// the backlog) and we would spin. So we wait for readiness instead and
    /// shed with the spare descriptor, as the readiness models do.
    Poll,
    /// A shortage with nothing to shed: a timeout of [`ACCEPT_BACKOFF`].
    Pause,
}

/// The loop's state: the ring, the listener, the connections in slots.
/// `ring` is declared before `pool`, so it is dropped (closed) first: the
/// pool's memory must outlive every operation that may write into it.
struct Server<'c> {
    ring: IoUring,
    /// Provided buffers; `None` with `--single-shot`.
    pool: Option<Pool>,
    config: &'c Config,
    /// Dropped (closed) once shutdown is requested *and* its last
    /// operation has completed.
    listener: Option<TcpListener>,
    /// The listener's one operation in flight, if any.
    listening: Option<Listening>,
    /// Shutdown was requested: submit no new listener operation.
    stopping: bool,
    spare: Spare,
    /// Slots indexed by the `user_data` of their operations; a freed slot
    /// goes on `free` and is reused, so `user_data` stays small.
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    open: usize,
    /// Connections in [`Recv::Starved`].
    starved: Vec<usize>,
    /// Operations submitted whose last completion has not been reaped.
    in_flight: usize,
    /// The pause's duration, which the kernel reads from our memory.
    pause: types::Timespec,
}

// ANCHOR: setup
/// Creates the ring; says whether it is the tuned one.
/// `IORING_SETUP_SINGLE_ISSUER` and `IORING_SETUP_DEFER_TASKRUN` (Linux
/// 6.1) tell the kernel that one thread submits and that completions need
/// only be posted when that thread asks for them (in `io_uring_enter`),
/// rather than by interrupting it as they happen: fewer context switches.
/// An older kernel refuses them with `EINVAL`, and we retry without (and
/// without multishot operations, which it may lack too).
fn ring() -> io::Result<(IoUring, bool)> {
    let tuned = IoUring::builder()
        .setup_cqsize(CQ_ENTRIES)
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(SQ_ENTRIES);
    let result = match tuned {
        Ok(ring) => Ok((ring, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .build(SQ_ENTRIES)
            .map(|ring| (ring, false)),
        Err(e) => Err(e),
    };
    result.map_err(|e| match e.raw_os_error() {
        Some(libc::ENOSYS | libc::EPERM | libc::EACCES) => io::Error::new(
            e.kind(),
            format!(
                "io_uring is unavailable here ({e}): the kernel lacks it, \
                 kernel.io_uring_disabled is set, or a seccomp filter forbids it"
            ),
        ),
        _ => io::Error::new(e.kind(), format!("cannot create an io_uring: {e}")),
    })
}
// ANCHOR_END: setup

/// Serves every client until shutdown is requested and the open
/// connections have finished.
pub fn serve(listener: TcpListener, config: &Config, flags: Flags) -> io::Result<()> {
    let (ring, tuned) = ring()?;
    let pool = if tuned && !flags.single_shot {
        match Pool::register(&ring) {
            Ok(pool) => Some(pool),
            Err(e) => {
                config.log(format_args!("no buffer ring ({e}): single-shot"));
                None
            }
        }
    } else {
        None
    };
    config.log(format_args!(
        "{}",
        if pool.is_some() {
            "multishot accept and recv, provided buffers"
        } else {
            "single-shot accept and recv, a buffer per connection"
        }
    ));
    // Non-blocking only for the fallback `accept_one` while out of
    // descriptors; the ring's accept waits for a client either way.
    listener.set_nonblocking(true)?;
    let mut server = Server {
        ring,
        pool,
        config,
        listener: Some(listener),
        listening: None,
        stopping: false,
        spare: Spare::new()?,
        conns: Vec::new(),
        free: Vec::new(),
        open: 0,
        starved: Vec::new(),
        in_flight: 0,
        pause: types::Timespec::from(ACCEPT_BACKOFF),
    };
    let result = server.run();
    if server.in_flight > 0 {
        // Only after a fatal error: the kernel may still write into the
        // buffers of operations in flight, even after the ring is closed
        // (it cancels them asynchronously), so they are leaked rather than
        // freed. The process is about to exit anyway.
        std::mem::forget(std::mem::take(&mut server.conns));
        std::mem::forget(server.pool.take());
    }
    result
}

impl Server<'_> {
    // ANCHOR: event-loop
    /// The loop: submit what the last turn queued and wait for at least
    /// one completion (one `io_uring_enter`), then handle every completion
    /// there is, queueing the operations they call for.
    fn run(&mut self) -> io::Result<()> {
        // The eventfd stays readable once signalled, so this one-shot poll
        // completes at once if shutdown came before the loop started.
        let shutdown = self.config.shutdown.fd().as_raw_fd();
        self.push(
            opcode::PollAdd::new(types::Fd(shutdown), libc::POLLIN as u32)
                .build()
                .user_data(SHUTDOWN),
        )?;
        self.accept()?;
        let mut reaped: Vec<cqueue::Entry> = Vec::with_capacity(CQ_ENTRIES as usize);
        // In flight too: the ring is closed only once it holds nothing of ours.
        while self.listener.is_some() || self.open > 0 || self.in_flight > 0 {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                // A signal (none is expected: they are blocked), or a full
                // completion queue: reap, then enter again.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
                Err(e) => return Err(e),
            }
            // Copied out first: handling a completion pushes submissions,
            // and both queues live in the one `ring` we borrow mutably.
            reaped.extend(self.ring.completion());
            for cqe in reaped.drain(..) {
                // A multishot operation stays in flight while its CQEs say
                // "more".
                if !cqueue::more(cqe.flags()) {
                    self.in_flight -= 1;
                }
                self.complete(cqe.user_data(), cqe.result(), cqe.flags())?;
            }
            self.wake_starved();
        }
        self.config
            .log(format_args!("shutdown: all connections closed"));
        Ok(())
    }
    // ANCHOR_END: event-loop

    /// Queues one operation; flushes the queue to the kernel first if it
    /// is full.
    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // Every entry built in this file points at no memory (accept,
            // poll, cancel, multishot recv), at `self.pause` (lives as long
            // as the ring), or into a buffer: a connection's own is freed
            // only when nothing of it is in flight (`Conn::recv`,
            // `Conn::sending`), a pool buffer is given back only when its
            // send completed in full, and the pool outlives the ring.
            // SAFETY: so whatever `entry` points at stays allocated and
            // untouched until its last completion is reaped.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                self.in_flight += 1;
                return Ok(());
            }
            match self.ring.submit() {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn complete(&mut self, user_data: u64, result: i32, flags: u32) -> io::Result<()> {
        match op_of(user_data) {
            ACCEPT | LISTEN_POLL | PAUSE => self.on_listener(op_of(user_data), result, flags)?,
            RECV => {
                self.on_recv(slot_of(user_data), result, flags);
                self.pump(slot_of(user_data));
            }
            SEND => {
                self.on_send(slot_of(user_data), result);
                self.pump(slot_of(user_data));
            }
            SHUTDOWN => self.stop_accepting(),
            CANCEL => {}
            other => unreachable!("user_data with unknown operation {other}"),
        }
        Ok(())
    }

    // ANCHOR: listener
    /// Submits the accept: no address buffer (it would have to outlive the
    /// operation too; the peer is asked for with `getpeername` when
    /// `--verbose` needs it). Multishot with provided buffers: one SQE
    /// accepts client after client until it fails or is cancelled.
    fn accept(&mut self) -> io::Result<()> {
        let fd = types::Fd(self.listener_fd());
        self.listening = Some(Listening::Accept);
        let entry = if self.pool.is_some() {
            opcode::AcceptMulti::new(fd)
                .flags(libc::SOCK_CLOEXEC)
                .build()
        } else {
            opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
                .flags(libc::SOCK_CLOEXEC)
                .build()
        };
        self.push(entry.user_data(ACCEPT))
    }

    fn listener_fd(&self) -> i32 {
        self.listener
            .as_ref()
            .expect("a listener operation after the listener was closed")
            .as_raw_fd()
    }

    /// A completion of the listener's one operation.
    fn on_listener(&mut self, op: u64, result: i32, flags: u32) -> io::Result<()> {
        if op == ACCEPT && result >= 0 {
            // SAFETY: a successful accept's result is a new descriptor that
            // nothing else in this process knows of; the stream owns it.
            let stream = unsafe { TcpStream::from_raw_fd(result) };
            // Nagle off: an echo sent in 16 KiB pieces would otherwise wait
            // for delayed ACKs (`echo_protocol::no_delay`). The fallback
            // `accept_one` does the same.
            echo_protocol::no_delay(&stream);
            self.admit(stream, None);
        }
        if cqueue::more(flags) {
            // A multishot accept, still armed.
            return Ok(());
        }
        self.listening = None;
        if self.stopping {
            // This was the operation shutdown waited for (cancelled, or
            // finished first): only now may the listener be closed.
            self.listener = None;
            return Ok(());
        }
        let next = match (op, result) {
            (ACCEPT, r) if r >= 0 => Listening::Accept,
            (ACCEPT, r) => {
                let err = io::Error::from_raw_os_error(-r);
                if echo_protocol::accept_error_is_transient(&err) {
                    self.config.log(format_args!("accept: {err}"));
                    Listening::Accept
                } else if matches!(-r, libc::EMFILE | libc::ENFILE) {
                    self.config.log(format_args!(
                        "accept: {err}; watching the listener for readiness until descriptors are free"
                    ));
                    self.accept_ready()
                } else if echo_protocol::accept_error_is_shortage(&err) {
                    self.config.log(format_args!("accept: {err}"));
                    Listening::Pause
                } else {
                    return Err(io::Error::new(err.kind(), format!("accept: {err}")));
                }
            }
            // The listener is readable, or the pause is over: take what
            // the backlog holds the readiness way.
            _ => self.accept_ready(),
        };
        match next {
            Listening::Accept => self.accept(),
            Listening::Poll => {
                self.listening = Some(Listening::Poll);
                let fd = self.listener_fd();
                self.push(
                    opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
                        .build()
                        .user_data(LISTEN_POLL),
                )
            }
            Listening::Pause => {
                self.listening = Some(Listening::Pause);
                let pause: *const types::Timespec = &self.pause;
                self.push(opcode::Timeout::new(pause).build().user_data(PAUSE))
            }
        }
    }

    /// Out of descriptors: accepts with `accept4` on the non-blocking
    /// listener, shedding with the spare descriptor, and says what to wait
    /// on next. Back to the ring's accept as soon as a client is admitted:
    /// descriptors are free again.
    fn accept_ready(&mut self) -> Listening {
        let Some(listener) = self.listener.take() else {
            return Listening::Poll;
        };
        let mut next = Listening::Poll;
        for _ in 0..ACCEPT_BATCH {
            match accept_one(&listener, &mut self.spare) {
                Accepted::Client(stream, peer) => {
                    self.admit(stream, Some(peer));
                    next = Listening::Accept;
                    break;
                }
                // Poll, not accept: with no descriptor to spare, an accept
                // through the ring would fail at once, and again, and again.
                Accepted::Empty => break,
                Accepted::Skipped(e) => self.config.log(format_args!("accept: {e}")),
                Accepted::Later(e) => {
                    self.config.log(format_args!("accept: {e}"));
                    next = Listening::Pause;
                    break;
                }
            }
        }
        self.listener = Some(listener);
        next
    }

    /// Shutdown requested: no more clients. The listener's operation in
    /// flight still holds the listener's file and would accept more
    /// clients after we closed our descriptor, so it is cancelled, and the
    /// listener is closed on its last completion (in [`Self::on_listener`]).
    fn stop_accepting(&mut self) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.config.log(format_args!(
            "shutdown requested: no longer accepting, {} connections open",
            self.open
        ));
        let target = match self.listening {
            Some(Listening::Accept) => ACCEPT,
            Some(Listening::Poll) => LISTEN_POLL,
            Some(Listening::Pause) => PAUSE,
            None => {
                self.listener = None;
                return;
            }
        };
        // Cannot fail but for want of memory; then the accept completes
        // with the next client instead, who is turned away.
        let _ = self.push(opcode::AsyncCancel::new(target).build().user_data(CANCEL));
    }
    // ANCHOR_END: listener

    /// Takes a new client in, or turns it away at `--max-conns`.
    fn admit(&mut self, stream: TcpStream, peer: Option<SocketAddr>) {
        let peer = peer.or_else(|| {
            // Only for the log: a syscall saved when it is off.
            if self.config.verbose {
                stream.peer_addr().ok()
            } else {
                None
            }
        });
        let who = Who(peer);
        if self.open >= self.config.max_conns {
            self.config.log(format_args!(
                "{who}: refused, {} connections open",
                self.config.max_conns
            ));
            return;
        }
        if self.stopping {
            self.config
                .log(format_args!("{who}: refused, shutting down"));
            return;
        }
        self.config.log(format_args!("{who}: connected"));
        let conn = Conn {
            stream,
            peer,
            // Zeroed, but not free: glibc's calloc clears most 16 KiB blocks
            // carved from its heap by writing zeros, so the whole buffer is
            // resident from the start (10,000 connections: 152 MiB, see
            // notes/model-io-uring.md). Allocating it with mmap (untouched
            // pages cost address space only) would hold about one page per
            // idle connection; the pool is the mode that holds none.
            own: match self.pool {
                Some(_) => None,
                None => Some(vec![0; BUFFER_SIZE].into_boxed_slice()),
            },
            unsent: VecDeque::new(),
            sent: 0,
            echoed: 0,
            recv: Recv::Idle,
            sending: false,
            eof: false,
            failed: None,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.conns[slot] = Some(conn);
                slot
            }
            None => {
                self.conns.push(Some(conn));
                self.conns.len() - 1
            }
        };
        self.open += 1;
        self.pump(slot);
    }

    // ANCHOR: pump
    /// Submits whatever a connection can do next, after any change to it:
    /// send the oldest unsent bytes, receive (or stop receiving), or close
    /// once nothing of it is in flight.
    fn pump(&mut self, slot: usize) {
        let multishot = self.pool.is_some();
        let Some(conn) = self.conns[slot].as_mut() else {
            return;
        };
        let fd = types::Fd(conn.stream.as_raw_fd());
        let mut entries: [Option<squeue::Entry>; 2] = [None, None];

        // One send at a time, so the bytes leave in the order they came.
        if !conn.sending && conn.failed.is_none() {
            if let Some(&chunk) = conn.unsent.front() {
                let bytes = match (chunk.bid, &self.pool, &conn.own) {
                    (Some(bid), Some(pool), _) => pool.bytes(bid, chunk.len),
                    (None, _, Some(own)) => &own[..chunk.len],
                    _ => unreachable!("a chunk with no buffer"),
                };
                let rest = &bytes[conn.sent..];
                conn.sending = true;
                // MSG_NOSIGNAL: a client gone away is an EPIPE completion,
                // not a SIGPIPE.
                entries[0] = Some(
                    opcode::Send::new(fd, rest.as_ptr(), rest.len() as u32)
                        .flags(libc::MSG_NOSIGNAL)
                        .build()
                        .user_data(user_data(SEND, slot)),
                );
            }
        }

        // Single-shot: receive only once everything was sent (cap 1), so
        // the one buffer is never received into while a send reads it.
        let cap = if multishot { QUEUE_CAP } else { 1 };
        let want = conn.failed.is_none() && !conn.eof && conn.unsent.len() < cap;
        match conn.recv {
            Recv::Idle if want => {
                conn.recv = Recv::Armed;
                entries[1] = Some(match &mut conn.own {
                    None => opcode::RecvMulti::new(fd, pool::GROUP)
                        .build()
                        .user_data(user_data(RECV, slot)),
                    Some(own) => opcode::Recv::new(fd, own.as_mut_ptr(), own.len() as u32)
                        .build()
                        .user_data(user_data(RECV, slot)),
                });
            }
            // Back-pressure, or a failure: stop the multishot recv. More
            // data may still complete before the cancel takes effect; it
            // is kept and echoed like the rest.
            Recv::Armed if !want && multishot => {
                conn.recv = Recv::Cancelling;
                entries[1] = Some(
                    opcode::AsyncCancel::new(user_data(RECV, slot))
                        .build()
                        .user_data(user_data(CANCEL, slot)),
                );
            }
            _ => {}
        }

        let idle = matches!(conn.recv, Recv::Idle | Recv::Starved) && !conn.sending;
        let finished = conn.failed.is_some() || (conn.eof && conn.unsent.is_empty());
        if idle && finished {
            self.close(slot);
            return;
        }
        for entry in entries.into_iter().flatten() {
            if let Err(e) = self.push(entry) {
                // A ring that cannot take an entry is about to fail the
                // whole loop; record it on the connection for the log.
                let conn = self.conns[slot].as_mut().expect("live slot");
                conn.failed.get_or_insert(e);
            }
        }
    }
    // ANCHOR_END: pump

    // ANCHOR: recv-send
    /// A recv completed: `result` bytes are in a buffer (the connection's
    /// own, or the pool buffer named in `flags`), or the client half-closed
    /// (0), or it failed (negative errno).
    fn on_recv(&mut self, slot: usize, result: i32, flags: u32) {
        let conn = self.conns[slot]
            .as_mut()
            .expect("recv completion on a free slot");
        if !cqueue::more(flags) {
            conn.recv = Recv::Idle;
        }
        // Whatever the result, a buffer named in the flags is ours now.
        let bid = cqueue::buffer_select(flags);
        if let (Some(bid), Some(pool)) = (bid, &mut self.pool) {
            pool.taken();
            if result <= 0 {
                pool.give_back(bid);
            }
        }
        match result {
            n if n > 0 => conn.unsent.push_back(Chunk {
                bid,
                len: n as usize,
            }),
            0 => conn.eof = true,
            // The pool ran dry: add a slab, or wait for buffers to come back.
            // Every receive armed when it ran dry fails alike, often in the
            // same batch: only the first of them may grow the pool. Were each
            // to add a slab, 1,000 busy connections would take the pool to its
            // ceiling (16,384 buffers, 64 MiB touched) for want of a few.
            // The others find buffers again and are re-armed as they are.
            e if -e == libc::ENOBUFS => {
                let pool = self.pool.as_mut().expect("ENOBUFS without a pool");
                if pool.free() > 0 {
                    // Grown (or given back) since this receive failed.
                } else if pool.grow() {
                    self.config.log(format_args!(
                        "buffer pool empty: grown to {} buffers",
                        pool.len()
                    ));
                } else {
                    conn.recv = Recv::Starved;
                    self.starved.push(slot);
                }
            }
            e if matches!(-e, libc::ECANCELED | libc::EINTR | libc::EAGAIN) => {}
            e => {
                conn.failed.get_or_insert(io::Error::from_raw_os_error(-e));
            }
        }
    }

    /// A send completed: `result` bytes left, maybe fewer than asked (a
    /// short send: the socket buffer filled up); the rest is sent next.
    /// Only once all of it is out may the buffer be received into again.
    fn on_send(&mut self, slot: usize, result: i32) {
        let conn = self.conns[slot]
            .as_mut()
            .expect("send completion on a free slot");
        conn.sending = false;
        match result {
            n if n > 0 => {
                conn.sent += n as usize;
                conn.echoed += n as u64;
                let front = *conn.unsent.front().expect("a send with nothing unsent");
                if conn.sent == front.len {
                    conn.unsent.pop_front();
                    conn.sent = 0;
                    if let (Some(bid), Some(pool)) = (front.bid, &mut self.pool) {
                        pool.give_back(bid);
                    }
                }
            }
            0 => {
                conn.failed.get_or_insert(ErrorKind::WriteZero.into());
            }
            e if matches!(-e, libc::EINTR | libc::EAGAIN) => {}
            e => {
                conn.failed.get_or_insert(io::Error::from_raw_os_error(-e));
            }
        }
    }
    // ANCHOR_END: recv-send

    /// Connections that found the pool empty get another try once buffers
    /// have come back.
    fn wake_starved(&mut self) {
        while let Some(pool) = &self.pool {
            if pool.free() == 0 {
                return;
            }
            let Some(slot) = self.starved.pop() else {
                return;
            };
            if let Some(conn) = self.conns[slot].as_mut() {
                if conn.recv == Recv::Starved {
                    conn.recv = Recv::Idle;
                    self.pump(slot);
                }
            }
        }
    }

    /// Frees a connection's slot, its buffers and its descriptor. Called
    /// only when nothing of it is in flight.
    fn close(&mut self, slot: usize) {
        let mut conn = self.conns[slot].take().expect("close of a free slot");
        debug_assert!(!conn.sending && matches!(conn.recv, Recv::Idle | Recv::Starved));
        self.free.push(slot);
        self.open -= 1;
        if let Some(pool) = &mut self.pool {
            for chunk in conn.unsent.drain(..) {
                pool.give_back(chunk.bid.expect("a pool buffer"));
            }
        }
        let who = Who(conn.peer);
        // EOF and everything echoed: shut our side so the client sees EOF
        // after its last byte.
        let result = match conn.failed.take() {
            Some(e) => Err(e),
            None => conn.stream.shutdown(Shutdown::Write),
        };
        match result {
            Ok(()) => self
                .config
                .log(format_args!("{who}: closed after {} bytes", conn.echoed)),
            Err(e) => self.config.log(format_args!("{who}: {e}")),
        }
    }
}

/// A client in the log: its address when known.
struct Who(Option<SocketAddr>);

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(peer) => write!(f, "{peer}"),
            None => f.write_str("client"),
        }
    }
}
