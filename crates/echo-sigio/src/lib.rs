//! The signal-driven echo server: the kernel sends the loop a real-time
//! signal whenever one of its sockets has news, the signal says which
//! descriptor (`si_fd`) and what news (`si_band`: `POLLIN`, `POLLOUT`,
//! `POLLERR`, `POLLHUP`), and the loop takes those signals synchronously,
//! in batches, from a `signalfd(2)`. No signal handler ever runs. One
//! thread, non-blocking sockets, the same bytes-moving code as the
//! readiness models (`echo_protocol::nonblocking`).
//!
//! Run with `cargo run -p echo-sigio -- --addr 127.0.0.1:7000`, then
//! connect as many `nc 127.0.0.1 7000` as you like: one thread serves all.
//!
//! # Syscalls
//!
//! `pthread_sigmask(2)` blocks `SIGIO` and [`io_signal`] (`SIGRTMIN`) in
//! every thread, so they stay pending instead of killing the process
//! (their default action); `signalfd(2)` then reads them, many per
//! `read(2)`. Each socket is armed with three `fcntl(2)` calls: `F_SETSIG`
//! (send the real-time signal, with `si_fd` and `si_band`, instead of a bare
//! `SIGIO`), `F_SETOWN_EX` with `F_OWNER_TID` (send it to the loop's
//! thread, not to the process, where any thread that does not block it
//! would take it) and `F_SETFL` with `O_ASYNC | O_NONBLOCK` (start
//! sending). The listener is armed once; every accepted socket must be armed
//! again, since on Linux `accept4(2)` passes on none of it (not `O_ASYNC`,
//! not the owner, not the signal). `sigaction(2)` to `SIG_IGN` and back
//! discards the queued signals after an overflow. `poll(2)` on the
//! signalfd and the shutdown eventfd is the only sleep. `accept4(2)`,
//! `read(2)` and `write(2)` as in every readiness model; `open(2)` of
//! `/dev/null` keeps a spare descriptor for `EMFILE`.
//!
//! # How the loop learns what to do
//!
//! A signal is news of a change, like an edge-triggered epoll event: the
//! kernel signals when data arrives (once per segment, not once per
//! empty-to-non-empty edge), when the client half-closes or resets, and
//! when a socket whose write hit `EAGAIN` has room again. So a connection
//! may wait for a signal only after `read` and `write` said `EAGAIN`, and
//! one stopped early (the fairness bound [`READS_PER_TURN`], the output cap
//! [`OUTPUT_CAP`]) is remembered by the loop, exactly as in `echo-mio`
//! (the `unread` flag and the `ready` list).
//!
//! Real-time signals are queued, each with its own `siginfo`, up to the
//! user's `RLIMIT_SIGPENDING` (shared by every process of that user). When
//! the queue is full the kernel falls back to a plain `SIGIO`, which is
//! not queued twice and names no descriptor: something happened, somewhere.
//! The loop then discards the queue and gives every connection a turn, the
//! O(connections) scan of `select` and `poll`, which is correct whatever was
//! lost. A signal can also outlive its socket: queued for descriptor 9, read
//! after 9 was closed and given to a new client. Every signal is therefore
//! taken as a hint: it makes the loop *try* a read or a write, and only
//! what those calls return closes a connection, so a stale signal costs
//! one `read` that says `EAGAIN`.
//!
//! # Trade-offs
//!
//! Like epoll, a wake-up costs O(news), idle connections cost nothing,
//! one thread uses one core. Unlike epoll, the kernel does not coalesce:
//! a busy socket queues a signal per segment, each a kernel allocation,
//! which the loop reads and mostly discards as already handled; the queue
//! is bounded by a limit shared with the user's other processes, so
//! overflow is not an error case but a regime the server enters under
//! load, and then each wake-up costs O(connections). Signals are process
//! state: the mask must be set before any thread starts, the signal number
//! is taken from every library in the process, and one owner thread
//! receives them (several loops need one signal number each, or one
//! `F_SETOWN_EX` thread each). `F_SETSIG` and `si_fd` are Linux's; BSD's
//! `O_ASYNC` gives the bare `SIGIO` only. Three `fcntl` calls per accepted
//! client, where epoll needs one `epoll_ctl`.

#![warn(missing_docs)]

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use echo_protocol::nonblocking::{self, Accepted, Echo, Spare, accept_one};
use echo_protocol::{ACCEPT_BACKOFF, Config, Model, NoFlags};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// This model, as the contract sees it: it meets every conformance case.
pub const MODEL: Model = Model {
    name: "echo-sigio",
    expected_limits: &[],
};

pub use echo_protocol::nonblocking::{OUTPUT_CAP, READ_CHUNK};

/// Most connections accepted per turn, so that a flood of new clients
/// cannot delay the ones already connected.
const ACCEPT_BATCH: usize = 64;

/// Signals read per `read(2)` of the signalfd (128 bytes each). More wait
/// in the kernel's queue for the next turn; nothing is lost.
const SIGNALS_PER_READ: usize = 256;

/// Most reads from one connection per turn. "Read until `EAGAIN`" alone is
/// unbounded: on loopback a client can refill its socket as fast as we
/// empty it, and every other client would wait. A connection stopped by
/// this bound goes on the `ready` list and gets its next turn after one
/// look at the signal queue, so the others' news comes first. One read of
/// [`READ_CHUNK`] is the share `echo-epoll` and `echo-mio` give.
pub const READS_PER_TURN: usize = 1;

// From <asm-generic/fcntl.h>, the same on every Linux architecture; the
// libc crate does not export them for glibc targets.
const F_SETSIG: libc::c_int = 10;
const F_SETOWN_EX: libc::c_int = 15;
const F_OWNER_TID: libc::c_int = 0;
// The si_code values of an F_SETSIG signal (<asm-generic/siginfo.h>).
const POLL_IN: i32 = 1;
const POLL_HUP: i32 = 6;

/// `struct f_owner_ex` of fcntl(2).
#[repr(C)]
struct FOwnerEx {
    kind: libc::c_int,
    pid: libc::pid_t,
}

/// The real-time signal the sockets are armed with: `SIGRTMIN`, the first
/// one the C library leaves to the program (glibc keeps two below it for
/// its threads). Any of `SIGRTMIN..=SIGRTMAX` would do; what matters is
/// that nothing else in the process uses it.
pub fn io_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

/// `SIGIO` and [`io_signal`] as a signal set.
fn io_signal_set() -> libc::sigset_t {
    // SAFETY: sigset_t is a plain bit array; all zeroes is a valid value,
    // and sigemptyset initialises it properly before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t we own; both signal numbers are
    // valid, so these calls cannot fail.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGIO);
        libc::sigaddset(&mut set, io_signal());
    }
    set
}

/// Blocks `SIGIO` and [`io_signal`] in the calling thread and in every
/// thread it starts afterwards. Call it before any thread exists: a thread
/// that does not block them would receive any that is sent to the process,
/// and their default action ends it. (This loop directs its signals to its
/// own thread, so a thread started earlier is safe in practice; the mask
/// says so for every thread.)
pub fn block_io_signals() -> io::Result<()> {
    let set = io_signal_set();
    // SAFETY: `set` is initialised; the old mask is not asked for.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// The signalfd the loop reads its signals from, and what arming a socket
/// needs: the signal and the thread that receives it.
struct Signals {
    fd: OwnedFd,
    signal: libc::c_int,
    tid: libc::pid_t,
}

/// What the loop makes of one signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum News {
    /// Something happened on this descriptor; `input` unless the band is
    /// only about room to write.
    Fd { fd: RawFd, input: bool },
    /// The queue overflowed (the kernel's plain `SIGIO`), or a signal that
    /// names no socket (sent by hand): look at everything.
    Anything,
}

impl Signals {
    /// Blocks the signals in this thread (as [`block_io_signals`]) and
    /// opens a non-blocking signalfd for them. Signals sent before this
    /// stay pending and are read from it like any other.
    fn new() -> io::Result<Signals> {
        block_io_signals()?;
        let set = io_signal_set();
        // SAFETY: -1 asks for a new descriptor; `set` is initialised.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: signalfd returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Signals {
            fd,
            signal: io_signal(),
            // SAFETY: gettid has no preconditions and cannot fail.
            tid: unsafe { libc::gettid() },
        })
    }

    // ANCHOR: arm
    /// Asks the kernel to signal this thread about `socket`. The order
    /// matters: with `O_ASYNC` set first, news arriving before `F_SETSIG`
    /// would come as a bare `SIGIO` and cost a needless scan.
    fn arm(&self, socket: BorrowedFd<'_>) -> io::Result<()> {
        let fd = socket.as_raw_fd();
        let owner = FOwnerEx {
            kind: F_OWNER_TID,
            pid: self.tid,
        };
        // SAFETY: `fd` is open for the duration (borrowed); F_SETSIG takes
        // an int, F_SETOWN_EX a pointer to a live f_owner_ex, F_SETFL an
        // int of flags. None of them touches memory beyond `owner`.
        let rc = unsafe {
            if libc::fcntl(fd, F_SETSIG, self.signal) < 0
                || libc::fcntl(fd, F_SETOWN_EX, &owner as *const FOwnerEx) < 0
                || libc::fcntl(fd, libc::F_SETFL, libc::O_ASYNC | libc::O_NONBLOCK) < 0
            {
                -1
            } else {
                0
            }
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    // ANCHOR_END: arm

    /// Reads what signals are pending, at most `buf.len()`; 0 when none.
    fn read(&self, buf: &mut [libc::signalfd_siginfo]) -> io::Result<usize> {
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        loop {
            // SAFETY: `buf` is valid for writes of `buf.len() * size`
            // bytes, and signalfd writes whole signalfd_siginfo records,
            // plain data for which any bytes are a valid value.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    std::mem::size_of_val(buf),
                )
            };
            if n >= 0 {
                return Ok(n as usize / size);
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                ErrorKind::WouldBlock => return Ok(0),
                ErrorKind::Interrupted => continue,
                _ => return Err(err),
            }
        }
    }

    /// What one signal says.
    fn news(&self, info: &libc::signalfd_siginfo) -> News {
        // si_code POLL_IN..=POLL_HUP (1..=6) is the kernel's F_SETSIG
        // signal; anything else (kill, sigqueue) names no socket.
        let from_kernel = (POLL_IN..=POLL_HUP).contains(&info.ssi_code);
        if info.ssi_signo as libc::c_int != self.signal || !from_kernel {
            return News::Anything;
        }
        let write_only = (libc::POLLOUT | libc::POLLWRNORM | libc::POLLWRBAND) as u32;
        News::Fd {
            fd: info.ssi_fd,
            input: info.ssi_band & !write_only != 0,
        }
    }

    // ANCHOR: discard
    /// Discards every queued [`io_signal`]: setting a signal's action to
    /// `SIG_IGN` discards its pending instances, blocked or not (POSIX, and
    /// Linux's `sigaction`), and the old action is put back at once. Signals
    /// sent in between are kept: a blocked signal is never ignored. Called
    /// after an overflow and before the scan that makes every discarded
    /// signal redundant; without it the loop would spend the next turns
    /// reading up to `RLIMIT_SIGPENDING` stale signals, while new news,
    /// finding the queue still full, overflowed again.
    fn discard_queued(&self) -> io::Result<()> {
        // SAFETY: sigaction is plain data; zeroed is a valid starting
        // value, and sa_sigaction = SIG_IGN with an empty mask is complete.
        let mut ignore: libc::sigaction = unsafe { std::mem::zeroed() };
        ignore.sa_sigaction = libc::SIG_IGN;
        // SAFETY: as above; it is filled in by the first call.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are to live sigaction values; the signal
        // is a valid real-time signal that may be ignored.
        let rc = unsafe {
            if libc::sigaction(self.signal, &ignore, &mut old) < 0
                || libc::sigaction(self.signal, &old, std::ptr::null_mut()) < 0
            {
                -1
            } else {
                0
            }
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    // ANCHOR_END: discard

    // ANCHOR: sleep
    /// Sleeps until a signal is pending, shutdown is requested (while
    /// `shutdown` is given) or `timeout` passes.
    ///
    /// Two descriptors, because an eventfd cannot send a signal: it has no
    /// `O_ASYNC` support (no `fasync` in the kernel). Alternatives not
    /// taken: a blocking `read` of the signalfd alone, relying on the
    /// connection the shutdown thread makes to wake `accept` (it arrives as
    /// a signal on the listener, but needs a free descriptor, and none is
    /// left exactly when the server is out of them), or `sigtimedwait(2)`
    /// with a period to look at the flag (a tick that wakes an idle server
    /// for nothing). Under load the loop does not come here: it reads the
    /// signalfd without sleeping as long as signals keep coming.
    fn sleep(&self, shutdown: Option<BorrowedFd<'_>>, timeout: Option<Duration>) -> io::Result<()> {
        let mut fds = vec![PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        if let Some(fd) = shutdown {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        // Rounded up: poll counts whole milliseconds, and waking early
        // would only find the pause not yet over.
        let timeout = match timeout {
            Some(d) => {
                PollTimeout::try_from(d + Duration::from_millis(1)).unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
    // ANCHOR_END: sleep
}

/// One client.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// Read but not yet written back, bounded by [`OUTPUT_CAP`].
    echo: Echo,
    /// The socket may hold bytes (or an EOF) we have not read: set by a
    /// signal about input (or a scan), cleared only by `EAGAIN` or EOF.
    unread: bool,
    /// On the `ready` list already.
    queued: bool,
}

impl Conn {
    // ANCHOR: drive
    /// Reads what is waiting, within the output cap and the fairness bound,
    /// then writes back what it can. Returns `Ok(true)` when the connection
    /// is finished (client half-closed and everything was echoed). Errors
    /// (a reset, a timeout) come from these calls only, never from a
    /// signal's band, which may be about an earlier socket with the same
    /// descriptor.
    fn drive(&mut self, scratch: &mut [u8]) -> io::Result<bool> {
        // A write that stops at EAGAIN is what makes the kernel send
        // `POLL_OUT` when room comes back.
        self.echo
            .edge_turn(&mut self.stream, &mut self.unread, READS_PER_TURN, scratch)?;
        if self.echo.done() {
            self.stream.shutdown(Shutdown::Write)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Stopped reading with bytes possibly left and room to take them: by
    /// the fairness bound, or at the cap whose output has just drained. No
    /// signal will come for them, so the loop must come back by itself.
    /// Stopped at the cap with output still queued, it needs nothing: the
    /// write that hit `EAGAIN` guarantees a `POLL_OUT` signal.
    fn needs_another_turn(&self) -> bool {
        self.unread && self.echo.wants_read()
    }
    // ANCHOR_END: drive
}

/// The connections and the loop's reusable buffer.
struct Clients {
    /// Keyed by descriptor, which is what a signal names.
    conns: HashMap<RawFd, Conn>,
    /// Connections to drive in this turn: signalled, scanned, new, or left
    /// with work by the last turn.
    ready: Vec<RawFd>,
    scratch: Vec<u8>,
}

impl Clients {
    /// A signal about `fd`. A descriptor not in the table was closed since
    /// the signal was queued (or is the listener's after shutdown): ignored.
    /// One in the table may be a newer client on a reused number: it gets
    /// a turn it did not need, which costs a `read` that says `EAGAIN`.
    fn hint(&mut self, fd: RawFd, input: bool) {
        let Some(conn) = self.conns.get_mut(&fd) else {
            return;
        };
        conn.unread |= input;
        if !conn.queued {
            conn.queued = true;
            self.ready.push(fd);
        }
    }

    /// After an overflow: every connection gets a turn, reading included,
    /// since any of them may have lost its signal.
    fn hint_all(&mut self) {
        for (&fd, conn) in &mut self.conns {
            conn.unread = true;
            if !conn.queued {
                conn.queued = true;
                self.ready.push(fd);
            }
        }
    }

    fn admit(&mut self, signals: &Signals, stream: TcpStream, peer: SocketAddr, config: &Config) {
        let Some(stream) = nonblocking::admit(stream, peer, self.conns.len(), config) else {
            return;
        };
        if let Err(e) = signals.arm(stream.as_fd()) {
            config.log(format_args!("{peer}: cannot arm O_ASYNC: {e}"));
            return;
        }
        let fd = stream.as_raw_fd();
        self.conns.insert(
            fd,
            Conn {
                stream,
                peer,
                echo: Echo::new(),
                // Bytes that arrived before `arm` sent no signal: look.
                unread: true,
                queued: true,
            },
        );
        self.ready.push(fd);
    }

    /// One turn for each connection on the `ready` list; those with work
    /// left go back on it for the next turn, finished or failed ones close.
    fn drive_ready(&mut self, config: &Config) {
        for fd in std::mem::take(&mut self.ready) {
            let Some(conn) = self.conns.get_mut(&fd) else {
                continue;
            };
            conn.queued = false;
            let result = match conn.drive(&mut self.scratch) {
                Ok(false) => {
                    if conn.needs_another_turn() {
                        conn.queued = true;
                        self.ready.push(fd);
                    }
                    continue;
                }
                Ok(true) => Ok(()),
                Err(e) => Err(e),
            };
            let Some(conn) = self.conns.remove(&fd) else {
                continue;
            };
            match result {
                Ok(()) => config.log(format_args!(
                    "{}: closed after {} bytes",
                    conn.peer,
                    conn.echo.echoed()
                )),
                Err(e) => config.log(format_args!("{}: {e}", conn.peer)),
            }
            // Closing removes the socket's O_ASYNC registration; signals
            // already queued for it remain, and are stale from here on.
        }
    }
}

/// What is left in the listen backlog after [`accept_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backlog {
    /// Accepted until `EAGAIN`: the next connection brings a signal.
    Empty,
    /// Stopped at [`ACCEPT_BATCH`], or not looked at yet: accept again in
    /// the next turn, which must not sleep, since no signal will say so.
    More,
    /// Out of memory or of a spare descriptor: retry at this instant,
    /// since no signal will say when.
    Later(Instant),
}

impl Backlog {
    /// Whether to accept in this turn.
    fn due(self) -> bool {
        match self {
            Backlog::Empty => false,
            Backlog::More => true,
            Backlog::Later(until) => Instant::now() >= until,
        }
    }
}

/// Serves every client from this one thread until shutdown is requested and
/// the open connections have finished.
pub fn serve(listener: TcpListener, config: &Config, _flags: NoFlags) -> io::Result<()> {
    let signals = Signals::new()?;
    signals.arm(listener.as_fd())?;
    let mut listener = Some(listener);
    let mut spare = Spare::new()?;
    let mut clients = Clients {
        conns: HashMap::new(),
        ready: Vec::new(),
        scratch: vec![0; READ_CHUNK],
    };
    // SAFETY: signalfd_siginfo is plain data; all zeroes is a valid value.
    let mut infos: Vec<libc::signalfd_siginfo> =
        vec![unsafe { std::mem::zeroed() }; SIGNALS_PER_READ];
    // Clients that connected between the readiness line and `arm` sent
    // no signal: look at the backlog first.
    let mut backlog = Backlog::More;

    // ANCHOR: event-loop
    while listener.is_some() || !clients.conns.is_empty() {
        if listener.is_some() && config.shutdown.requested() {
            listener = None;
            backlog = Backlog::Empty;
            config.log(format_args!(
                "shutdown requested: no longer accepting, {} connections open",
                clients.conns.len()
            ));
            // With none open, the loop is over: going on would sleep for
            // a signal that no socket is left to send.
            continue;
        }
        let n = signals.read(&mut infos)?;
        if n == 0 && clients.ready.is_empty() && !backlog.due() {
            // Nothing pending, nothing owed: sleep. The eventfd stays
            // readable once signalled, so it is watched only until the
            // listener is gone, or the sleep would return at once for ever.
            let shutdown = listener.as_ref().map(|_| config.shutdown.fd());
            let timeout = match backlog {
                Backlog::Later(until) => Some(until.saturating_duration_since(Instant::now())),
                Backlog::Empty | Backlog::More => None,
            };
            signals.sleep(shutdown, timeout)?;
            continue;
        }
        let listener_fd = listener.as_ref().map(|l| l.as_raw_fd());
        let mut overflowed = false;
        for info in &infos[..n] {
            match signals.news(info) {
                News::Anything => overflowed = true,
                News::Fd { fd, .. } if Some(fd) == listener_fd => {
                    if backlog == Backlog::Empty {
                        backlog = Backlog::More;
                    }
                }
                News::Fd { fd, input } => clients.hint(fd, input),
            }
        }
        if overflowed {
            // Discard first, then scan: news after the discard is queued
            // again (or overflows again, and brings another SIGIO), news
            // before it is covered by the scan.
            signals.discard_queued()?;
            config.log(format_args!(
                "signal queue overflowed: scanning {} connections",
                clients.conns.len()
            ));
            clients.hint_all();
            if listener.is_some() && backlog == Backlog::Empty {
                backlog = Backlog::More;
            }
        }
        clients.drive_ready(config);
        if let Some(l) = &listener
            && backlog.due()
        {
            backlog = accept_batch(l, &mut spare, &signals, &mut clients, config);
        }
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
    signals: &Signals,
    clients: &mut Clients,
    config: &Config,
) -> Backlog {
    for _ in 0..ACCEPT_BATCH {
        match accept_one(listener, spare) {
            Accepted::Client(stream, peer) => clients.admit(signals, stream, peer, config),
            Accepted::Empty => return Backlog::Empty,
            Accepted::Skipped(e) => config.log(format_args!("accept: {e}")),
            // Nothing to free here: serve the connections we have and
            // retry after a pause. Retrying at once would spin; waiting
            // for a signal would wait for the next client, since the one
            // already in the backlog brings no new one.
            Accepted::Later(e) => {
                config.log(format_args!("accept: {e}"));
                return Backlog::Later(Instant::now() + ACCEPT_BACKOFF);
            }
        }
    }
    Backlog::More
}
