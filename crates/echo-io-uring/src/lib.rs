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
//! stop accepting. One `io_uring_enter(2)` per turn of the loop submits every
//! entry queued since the last turn and sleeps until at least one completes;
//! completion queue entries (CQEs) are then read from shared memory with no
//! syscall at all. `shutdown(2)` and `close(2)` are plain calls, made when
//! nothing is in flight on the socket; `accept4(2)` and `open(2)` of
//! `/dev/null` only when out of descriptors (the spare-descriptor trick).
//!
//! # Trade-offs
//!
//! Good at: few syscalls. A readiness loop makes one `epoll_wait` plus a
//! `read` and a `write` per echo; here a turn of the loop is one
//! `io_uring_enter`, however many receives and sends it submits and reaps.
//! The kernel copies straight into the connection's buffer, so no scratch
//! buffer and no second copy into an output queue either.
//!
//! What it costs: **buffer ownership**. From the moment a recv or send is
//! submitted until its completion is reaped, the kernel owns the memory
//! it points to: it may write into it (recv) or read it (send) at any
//! time, from another context, with no borrow checker to stop us. So the
//! buffer cannot be a scratch buffer shared by all connections (several
//! receives are in flight at once), cannot be freed when we decide to
//! close a connection, and cannot be reused for the next recv while a send
//! from it is still in flight. Here each connection owns one buffer
//! ([`BUFFER_SIZE`]) and has at most one operation in flight: a recv, or
//! the send of what that recv brought. A connection is therefore only ever
//! closed on a completion, when the kernel has just handed its buffer back.
//! The same rule holds for the listener: closing its descriptor does not
//! stop an accept already submitted (the ring holds its own reference to
//! the file), so shutdown cancels the accept and waits for its completion.
//!
//! Back-pressure comes with that rule for free: a connection receives again
//! only once everything it received was sent, so a client that does not
//! read stops being read after one buffer, and the kernel's socket buffers
//! push back on it. The price is that one connection never overlaps
//! receiving and sending; the readiness models keep up to `OUTPUT_CAP`
//! (1 MiB) in flight per client instead.
//!
//! Memory: one [`BUFFER_SIZE`] buffer per open connection, busy or idle.
//! The alternative not taken here is provided buffers
//! (`IORING_OP_PROVIDE_BUFFERS`, buffer rings, multishot recv): the kernel
//! picks a buffer from a pool only when data arrives, so an idle client
//! costs none; in exchange the pool can run dry, and a buffer goes back to
//! it only after its echo is sent. Likewise multishot accept (one SQE,
//! many accepted sockets) would save an SQE per client.
//!
//! io_uring may be unavailable: a kernel built without it (`ENOSYS`),
//! `kernel.io_uring_disabled` set, or a seccomp filter (container runtimes)
//! that refuses `io_uring_setup` (`EPERM`). [`serve`] then fails with one
//! line and exit status 1.

#![warn(missing_docs)]

use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};

use echo_protocol::nonblocking::{Accepted, Spare, accept_one};
use echo_protocol::{ACCEPT_BACKOFF, Config, Model, NoFlags};
use io_uring::{IoUring, cqueue, opcode, squeue, types};

/// This model, as the contract sees it: it meets every conformance case.
pub const MODEL: Model = Model {
    name: "echo-io-uring",
    expected_limits: &[],
};

/// Bytes one connection may have received and not yet echoed: the one
/// buffer it owns. Smaller than the readiness models' 64 KiB read (a
/// large transfer takes more round trips through the ring) because this
/// one is held by every open connection, idle or not.
pub const BUFFER_SIZE: usize = 16 * 1024;

/// Submission queue entries: the most operations queued between two
/// `io_uring_enter` calls before we must flush early. Each connection has
/// at most one operation in flight, so this bounds nothing but a batch.
const SQ_ENTRIES: u32 = 512;

/// Completion queue entries. The kernel keeps completions that do not fit
/// (`IORING_FEAT_NODROP`) and hands them over on the next enter, so this
/// too only sizes a batch.
const CQ_ENTRIES: u32 = 4096;

/// Most clients the fallback accept (out of descriptors) takes per wake-up.
const ACCEPT_BATCH: usize = 64;

// ANCHOR: user-data
/// What an operation was, in the low byte of its `user_data`; the rest is
/// the connection's slot. The kernel returns `user_data` untouched in the
/// completion, and it is all we learn about which operation finished.
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

/// One client. Its buffer's contents `buf[sent..filled]` are received and
/// not yet echoed; `in_flight` says the kernel owns `buf` right now.
struct Conn {
    stream: TcpStream,
    peer: Option<SocketAddr>,
    buf: Box<[u8]>,
    filled: usize,
    sent: usize,
    echoed: u64,
    in_flight: bool,
}

/// What the listener is waiting on: at most one operation of it is in
/// flight at any time, and its `user_data` is kept to cancel it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listening {
    /// An `IORING_OP_ACCEPT` is in flight: the normal state.
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
struct Server<'c> {
    ring: IoUring,
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
    /// Operations submitted whose completion has not been reaped.
    in_flight: usize,
    /// The pause's duration, which the kernel reads from our memory.
    pause: types::Timespec,
}

// ANCHOR: setup
/// Creates the ring. `IORING_SETUP_SINGLE_ISSUER` and
/// `IORING_SETUP_DEFER_TASKRUN` (Linux 6.1) tell the kernel that one
/// thread submits and that completions need only be posted when that
/// thread asks for them (in `io_uring_enter`), rather than by interrupting
/// it as they happen: fewer context switches. An older kernel refuses them
/// with `EINVAL`, and we retry without.
fn ring() -> io::Result<IoUring> {
    let tuned = IoUring::builder()
        .setup_cqsize(CQ_ENTRIES)
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(SQ_ENTRIES);
    let result = match tuned {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .build(SQ_ENTRIES),
        other => other,
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
pub fn serve(listener: TcpListener, config: &Config, _flags: NoFlags) -> io::Result<()> {
    let ring = ring()?;
    // Non-blocking only for the fallback `accept_one` while out of
    // descriptors; the ring's accept waits for a client either way.
    listener.set_nonblocking(true)?;
    let mut server = Server {
        ring,
        config,
        listener: Some(listener),
        listening: None,
        stopping: false,
        spare: Spare::new()?,
        conns: Vec::new(),
        free: Vec::new(),
        open: 0,
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
            self.in_flight -= reaped.len();
            for cqe in reaped.drain(..) {
                self.complete(cqe.user_data(), cqe.result())?;
            }
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
            // SAFETY: every entry built in this file points either at no
            // memory (accept, poll, cancel), at `self.pause` (lives as
            // long as the ring), or into a connection's `buf`, which stays
            // allocated and untouched until this entry's completion is
            // reaped: `in_flight` is set, and a connection is freed only on
            // a completion, when nothing of it is in flight.
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

    fn complete(&mut self, user_data: u64, result: i32) -> io::Result<()> {
        match op_of(user_data) {
            ACCEPT | LISTEN_POLL | PAUSE => self.on_listener(op_of(user_data), result),
            RECV => {
                self.on_recv(slot_of(user_data), result);
                Ok(())
            }
            SEND => {
                self.on_send(slot_of(user_data), result);
                Ok(())
            }
            SHUTDOWN => {
                self.stop_accepting();
                Ok(())
            }
            CANCEL => Ok(()),
            other => unreachable!("user_data with unknown operation {other}"),
        }
    }

    // ANCHOR: listener
    /// Submits the accept: no address buffer (it would have to outlive the
    /// operation too; the peer is asked for with `getpeername` when
    /// `--verbose` needs it).
    fn accept(&mut self) -> io::Result<()> {
        let fd = self.listener_fd();
        self.listening = Some(Listening::Accept);
        self.push(
            opcode::Accept::new(types::Fd(fd), std::ptr::null_mut(), std::ptr::null_mut())
                .flags(libc::SOCK_CLOEXEC)
                .build()
                .user_data(ACCEPT),
        )
    }

    fn listener_fd(&self) -> i32 {
        self.listener
            .as_ref()
            .expect("a listener operation after the listener was closed")
            .as_raw_fd()
    }

    /// The completion of the listener's one operation.
    fn on_listener(&mut self, op: u64, result: i32) -> io::Result<()> {
        self.listening = None;
        if op == ACCEPT && result >= 0 {
            // SAFETY: a successful accept's result is a new descriptor that
            // nothing else in this process knows of; the stream owns it.
            let stream = unsafe { TcpStream::from_raw_fd(result) };
            self.admit(stream, None);
        }
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
    /// flight still holds the listener's file and would accept one more
    /// client after we closed our descriptor, so it is cancelled, and the
    /// listener is closed when its completion comes (in [`Self::on_listener`]).
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
        // with the next client instead, who is admitted and served.
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
            // calloc'd: untouched pages of an idle client's buffer cost
            // address space, not memory.
            buf: vec![0; BUFFER_SIZE].into_boxed_slice(),
            filled: 0,
            sent: 0,
            echoed: 0,
            in_flight: false,
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
        self.recv(slot);
    }

    // ANCHOR: recv-send
    /// Hands the whole buffer to the kernel to receive into.
    fn recv(&mut self, slot: usize) {
        let conn = self.conns[slot].as_mut().expect("recv on a free slot");
        debug_assert!(!conn.in_flight, "two operations on one buffer");
        conn.in_flight = true;
        conn.filled = 0;
        conn.sent = 0;
        let entry = opcode::Recv::new(
            types::Fd(conn.stream.as_raw_fd()),
            conn.buf.as_mut_ptr(),
            conn.buf.len() as u32,
        )
        .build()
        .user_data(user_data(RECV, slot));
        self.submit_or_close(slot, entry);
    }

    /// Hands `buf[sent..filled]` to the kernel to send. `MSG_NOSIGNAL`: a
    /// client gone away is an `EPIPE` completion, not a `SIGPIPE`.
    fn send(&mut self, slot: usize) {
        let conn = self.conns[slot].as_mut().expect("send on a free slot");
        debug_assert!(!conn.in_flight, "two operations on one buffer");
        conn.in_flight = true;
        let rest = &conn.buf[conn.sent..conn.filled];
        let entry = opcode::Send::new(
            types::Fd(conn.stream.as_raw_fd()),
            rest.as_ptr(),
            rest.len() as u32,
        )
        .flags(libc::MSG_NOSIGNAL)
        .build()
        .user_data(user_data(SEND, slot));
        self.submit_or_close(slot, entry);
    }

    fn submit_or_close(&mut self, slot: usize, entry: squeue::Entry) {
        if let Err(e) = self.push(entry) {
            // Never queued, so the buffer is ours again.
            self.conns[slot].as_mut().expect("live slot").in_flight = false;
            self.close(slot, Err(e));
        }
    }

    /// A recv completed: `result` bytes are in the buffer, or the client
    /// half-closed (0), or failed (negative errno).
    fn on_recv(&mut self, slot: usize, result: i32) {
        let conn = self.conns[slot]
            .as_mut()
            .expect("recv completion on a free slot");
        conn.in_flight = false;
        match result {
            n if n > 0 => {
                conn.filled = n as usize;
                self.send(slot);
            }
            // EOF. Everything received was sent before this recv was
            // submitted, so the echo is complete: shut our side and close.
            0 => {
                let done = conn.stream.shutdown(Shutdown::Write);
                self.close(slot, done);
            }
            e if -e == libc::EINTR || -e == libc::EAGAIN => self.recv(slot),
            e => self.close(slot, Err(io::Error::from_raw_os_error(-e))),
        }
    }

    /// A send completed: `result` bytes left, maybe fewer than asked (a
    /// partial send: the socket buffer filled up). The rest goes out in
    /// another send from the same buffer; only once all of it is out may
    /// the buffer be received into again.
    fn on_send(&mut self, slot: usize, result: i32) {
        let conn = self.conns[slot]
            .as_mut()
            .expect("send completion on a free slot");
        conn.in_flight = false;
        match result {
            n if n > 0 => {
                conn.sent += n as usize;
                conn.echoed += n as u64;
                if conn.sent < conn.filled {
                    self.send(slot);
                } else {
                    self.recv(slot);
                }
            }
            0 => self.close(slot, Err(ErrorKind::WriteZero.into())),
            e if -e == libc::EINTR || -e == libc::EAGAIN => self.send(slot),
            e => self.close(slot, Err(io::Error::from_raw_os_error(-e))),
        }
    }
    // ANCHOR_END: recv-send

    /// Frees a connection's slot, its buffer and its descriptor. Called
    /// only on a completion, when the kernel holds nothing of it.
    fn close(&mut self, slot: usize, result: io::Result<()>) {
        let conn = self.conns[slot].take().expect("close of a free slot");
        assert!(
            !conn.in_flight,
            "closing a connection the kernel still uses"
        );
        self.free.push(slot);
        self.open -= 1;
        let who = Who(conn.peer);
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
