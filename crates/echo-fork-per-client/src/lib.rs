//! The fork-per-client echo server: the parent accepts, `fork(2)`s one
//! child process per connection, and each child runs the blocking echo loop
//! every blocking model shares, [`echo_protocol::echo_until_eof`], then
//! exits. The parent closes its copy of the client socket at once; the child
//! closes its copy of the listener at once. (With threads it is the other
//! way round: a thread must *not* close what the other threads still use,
//! because a descriptor table shared by threads is one table; after `fork`
//! each process has a table of its own, holding a reference to every
//! socket, and each closes what it has no business with.)
//!
//! Run with `cargo run -p echo-fork-per-client -- --addr 127.0.0.1:7000`,
//! then `nc 127.0.0.1 7000` in a few terminals and watch `ps --forest`.
//!
//! # Syscalls
//!
//! Parent: `poll(2)` on the listener, a SIGCHLD eventfd and the shutdown
//! eventfd; `accept4(2)`; `fork(2)` (glibc's, through `libc::fork`);
//! `close(2)` of the client; `waitpid(2)` with `WNOHANG` to reap;
//! `sigaction(2)` once to install the SIGCHLD handler, which does one
//! `write(2)` to the eventfd; `kill(2)` with SIGKILL for children still
//! running when the grace period ends. Child: `prctl(PR_SET_PDEATHSIG)`,
//! `getppid(2)`, `sigaction(2)` (SIGCHLD back to default), `close(2)` of
//! the inherited descriptors it does not need, blocking `read(2)`,
//! `write(2)`, `shutdown(2)`, then `_exit(2)`.
//!
//! # How the parent learns that a child exited
//!
//! The kernel sends SIGCHLD to the parent. Three ways to hear it were open:
//!
//! - `signalfd(2)`, read in the poll loop, needs SIGCHLD *blocked in every
//!   thread*: a process-directed signal goes to any one thread that does
//!   not block it. The contract's shutdown thread already runs when
//!   [`serve`] is called, with only SIGINT and SIGTERM blocked; SIGCHLD
//!   would be delivered there, where its default action (ignore) discards
//!   it, and the signalfd would miss exits.
//! - `SIGCHLD` set to `SIG_IGN` makes the kernel reap by itself, but then
//!   the parent cannot count live children for `--max-conns`, nor wait for
//!   them at shutdown.
//! - Chosen: a SIGCHLD handler that only writes to an eventfd (the
//!   self-pipe trick). It works whichever thread runs it, and `write(2)` is
//!   async-signal-safe. The main thread polls that eventfd next to the
//!   listener and reaps with `waitpid(-1, WNOHANG)` in a loop (signals
//!   coalesce: one SIGCHLD may stand for many exits). Reaping happens in
//!   the main thread only, the same thread that records each fork, so the
//!   table of children needs no lock and a fast child cannot be reaped
//!   before it is recorded. The handler may also run on the shutdown
//!   thread, interrupting its `sigwait`; glibc's `sigwait` retries after
//!   `EINTR`, so SIGTERM still reaches it.
//!
//! # Fork safety
//!
//! `fork` in a multi-threaded process copies only the calling thread. Any
//! lock another thread held at that instant (the allocator's, stderr's) is
//! held forever in the child, so POSIX allows the child only
//! async-signal-safe calls until it `exec`s. The parent here has one other
//! thread, the shutdown thread, and rather than argue about what it may be
//! holding (it does connect a socket when a signal arrives, and std does
//! not promise that allocates nothing), the child's path uses nothing that
//! takes a lock: no allocation (the buffer is on the stack, the socket's
//! errors are plain OS errors), no stdio (the child never logs; the parent
//! logs the connection at fork and its end at reap, from the exit status),
//! no destructors (`_exit`, not `exit`, so nothing of the parent's state is
//! flushed or freed a second time).
//!
//! # Signals in the child, deliberately
//!
//! - SIGPIPE stays ignored (std sets `SIG_IGN` at start-up and `fork` keeps
//!   it): a write to a client that reset returns `EPIPE`, the echo loop
//!   returns an error and the child exits with status 1, instead of dying
//!   of a signal no one chose.
//! - SIGINT and SIGTERM stay blocked (the inherited mask): Ctrl-C at a
//!   terminal reaches the whole foreground process group, and the children
//!   must not die mid-transfer; the parent decides when they stop.
//! - SIGCHLD goes back to its default: the handler writes to the parent's
//!   eventfd, which is not the child's business.
//! - `PR_SET_PDEATHSIG` with SIGKILL (the one signal a blocked mask cannot
//!   hold back): if the parent dies, however it dies, its children die with
//!   it, so no stray keeps serving. `getppid` right after closes the race
//!   of a parent that died before the `prctl`.
//!
//! # Trade-offs
//!
//! Good at: isolation. A client's process has its own memory; a crash
//! there ends one connection. The code is the blocking loop again, and the
//! parent holds no client descriptor, so its open-files limit does not cap
//! the clients (each child has its own table).
//!
//! What it costs: a `fork` per connection (copying the page tables, then
//! copy-on-write faults), a process per client (a kernel task, page tables,
//! a stack), a context switch per wake-up as with threads, and reaping.
//! Nothing is shared after the fork: a counter or a cache common to all
//! clients would need shared memory or another process. `--max-conns`
//! caps the live children, and so the processes.
//!
//! # What the benchmark shows
//!
//! Per-connection setup is the most expensive of the blocking models
//! (`fork` is far slower than `pthread_create`), and memory per connection
//! is the highest; steady-state echo costs about what threads cost, since
//! the kernel schedules processes and threads alike.

#![warn(missing_docs)]

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use echo_protocol::{
    ACCEPT_BACKOFF, Config, GRACE_PERIOD, Model, NoFlags, accept_error_is_shortage,
    accept_error_is_transient, echo_until_eof,
};

/// This model, as the contract sees it: it meets every conformance case.
pub const MODEL: Model = Model {
    name: "echo-fork-per-client",
    expected_limits: &[],
};

/// Size of each child's read buffer, on the child's stack: no allocation
/// after `fork` (see "Fork safety").
pub const BUF_SIZE: usize = 16 * 1024;

/// The shutdown thread ends the process [`GRACE_PERIOD`] after the signal;
/// the parent stops waiting this much earlier, so that it kills and reaps
/// its remaining children itself, and the exit by the shutdown thread (with
/// the children dying of `PR_SET_PDEATHSIG`) is only the backstop.
const GRACE_MARGIN: Duration = Duration::from_millis(300);

/// The SIGCHLD eventfd, for the handler; -1 until installed. A static
/// because a signal handler receives no context.
static SIGCHLD_FD: AtomicI32 = AtomicI32::new(-1);

// ANCHOR: handler
/// Runs in whichever thread the kernel picks, between any two instructions
/// of it: so it makes one async-signal-safe call, and keeps `errno` as it
/// found it (the interrupted code may be about to read it).
extern "C" fn on_sigchld(_: libc::c_int) {
    let fd = SIGCHLD_FD.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    let one: u64 = 1;
    // SAFETY: `__errno_location` returns this thread's errno slot; `write`
    // reads 8 bytes from a live local. Both are async-signal-safe.
    unsafe {
        let errno = *libc::__errno_location();
        libc::write(fd, (&raw const one).cast(), 8);
        *libc::__errno_location() = errno;
    }
}
// ANCHOR_END: handler

// ANCHOR: install
/// The eventfd the SIGCHLD handler writes to, with the handler installed.
fn install_sigchld() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the result is checked before use.
    let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    SIGCHLD_FD.store(raw, Ordering::Relaxed);
    // SAFETY: a zeroed sigaction is valid (empty mask, no flags); the handler
    // only calls async-signal-safe functions. SA_NOCLDSTOP: stopped children
    // are not news; SA_RESTART: calls other than poll resume after it.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = on_sigchld as extern "C" fn(libc::c_int) as libc::sighandler_t;
        act.sa_flags = libc::SA_NOCLDSTOP | libc::SA_RESTART;
        libc::sigemptyset(&mut act.sa_mask);
        if libc::sigaction(libc::SIGCHLD, &act, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(fd)
}
// ANCHOR_END: install

/// Live children: pid to the client it serves. Only the main thread
/// touches it (forks and reaps), so it needs no lock.
type Children = HashMap<libc::pid_t, SocketAddr>;

/// Accepts connections and forks a child for each one, until shutdown is
/// requested; then waits up to the grace period for the children to end and
/// kills the rest.
pub fn serve(listener: TcpListener, config: &Config, _flags: NoFlags) -> io::Result<()> {
    let sigchld = install_sigchld()?;
    // Non-blocking so that a connection reset between poll and accept
    // cannot leave us blocked in accept.
    listener.set_nonblocking(true)?;
    let mut children = Children::new();
    // ANCHOR: accept-loop
    loop {
        let mut fds = [
            pollfd(listener.as_raw_fd()),
            pollfd(sigchld.as_raw_fd()),
            pollfd(config.shutdown.fd().as_raw_fd()),
        ];
        poll(&mut fds, None)?;
        if config.shutdown.requested() {
            break;
        }
        if fds[1].revents != 0 {
            reap(&sigchld, &mut children, config);
        }
        if fds[0].revents == 0 {
            continue;
        }
        let (stream, peer) = match listener.accept() {
            Ok((stream, peer)) => {
                // Nagle off, or a 64 KiB echo written 16 KiB at a time
                // waits for delayed ACKs: see `echo_protocol::no_delay`.
                echo_protocol::no_delay(&stream);
                (stream, peer)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if accept_error_is_transient(&e) => continue,
            Err(e) if accept_error_is_shortage(&e) => {
                config.log(format_args!("accept: {e} (backing off)"));
                std::thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
            Err(e) => return Err(e),
        };
        // ANCHOR: admission
        // A child may have exited without our having heard yet: reap before
        // refusing, so a free slot is not mistaken for a full house.
        if children.len() >= config.max_conns {
            reap(&sigchld, &mut children, config);
        }
        if children.len() >= config.max_conns {
            config.log(format_args!(
                "{peer}: refused, {} children serving",
                config.max_conns
            ));
            drop(stream);
            continue;
        }
        // ANCHOR_END: admission
        spawn_child(stream, peer, &listener, &sigchld, &mut children, config);
    }
    // ANCHOR_END: accept-loop
    drain(listener, &sigchld, &mut children, config);
    Ok(())
}

// ANCHOR: fork
/// Forks a child for `stream`. The parent records the child and closes its
/// copy of the socket; the child never returns from here.
fn spawn_child(
    stream: TcpStream,
    peer: SocketAddr,
    listener: &TcpListener,
    sigchld: &OwnedFd,
    children: &mut Children,
    config: &Config,
) {
    let parent = std::process::id() as libc::pid_t;
    // Everything the child closes is read before the fork: the child must
    // not call into anything that might allocate to find it.
    let inherited = [
        listener.as_raw_fd(),
        sigchld.as_raw_fd(),
        config.shutdown.fd().as_raw_fd(),
    ];
    // SAFETY: the child runs `child_main`, which makes only async-signal-
    // safe calls on values already in memory and ends in `_exit` (see the
    // module header, "Fork safety"); the parent goes on as before.
    match unsafe { libc::fork() } {
        -1 => {
            // EAGAIN (process limit) or ENOMEM: this client is turned away;
            // the next one may find room once children exit.
            let e = io::Error::last_os_error();
            config.log(format_args!("{peer}: cannot fork: {e}; closed"));
        }
        0 => child_main(stream, parent, &inherited),
        pid => {
            children.insert(pid, peer);
            config.log(format_args!("{peer}: connected, child {pid}"));
        }
    }
    // The parent's copy: without this close the parent would keep one
    // descriptor per client ever served (and hit EMFILE), and a client
    // whose child ended without a `shutdown` (a reset, a crash) would never
    // see the connection closed.
    drop(stream);
}

// ANCHOR: child
/// The child: set up the signals, drop what is the parent's, echo, exit.
/// Never returns.
fn child_main(mut stream: TcpStream, parent: libc::pid_t, inherited: &[RawFd]) -> ! {
    // Closing the listener and the eventfds behind the owners' backs is
    // sound because this process never returns to the code that owns them:
    // it ends in `_exit`, which runs no destructor.
    // SAFETY: prctl, getppid, sigaction and close are async-signal-safe
    // syscalls on values computed before the fork.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0
            || libc::getppid() != parent
        {
            libc::_exit(1);
        }
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGCHLD, &act, std::ptr::null_mut());
        for &fd in inherited {
            libc::close(fd);
        }
    }
    let mut buf = [0u8; BUF_SIZE];
    let code = match echo_until_eof(&mut stream, &mut buf) {
        Ok(_) => 0,
        // A reset or broken pipe: the parent reports it from the status.
        Err(_) => 1,
    };
    // SAFETY: `_exit` ends the process at once; the socket is closed by the
    // kernel, nothing of the parent's is flushed or freed.
    unsafe { libc::_exit(code) }
}
// ANCHOR_END: child
// ANCHOR_END: fork

// ANCHOR: reap
/// Clears the SIGCHLD eventfd, then reaps every child that has exited. The
/// eventfd is read first: an exit after the read writes it again, so it is
/// never lost; `waitpid` in a loop because one SIGCHLD may stand for many.
fn reap(sigchld: &OwnedFd, children: &mut Children, config: &Config) {
    let mut count: u64 = 0;
    // SAFETY: reads 8 bytes into a live local from a non-blocking eventfd;
    // EAGAIN (nothing pending) is fine.
    unsafe { libc::read(sigchld.as_raw_fd(), (&raw mut count).cast(), 8) };
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a live local the kernel writes.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            // 0: children remain, none exited; -1: ECHILD (none at all) or
            // EINTR, after which the next SIGCHLD brings us back.
            return;
        }
        let peer = children.remove(&pid);
        if config.verbose {
            let who = peer.map_or_else(|| format!("child {pid}"), |p| format!("{p}: child {pid}"));
            if libc::WIFEXITED(status) {
                let how = match libc::WEXITSTATUS(status) {
                    0 => "closed",
                    _ => "ended by a connection error",
                };
                eprintln!("{who} {how}");
            } else if libc::WIFSIGNALED(status) {
                eprintln!("{who} killed by signal {}", libc::WTERMSIG(status));
            }
        }
    }
}
// ANCHOR_END: reap

// ANCHOR: shutdown
/// Stops accepting (closing the listener makes new connections fail at
/// once: no child holds a copy of it), waits for the children to finish
/// until shortly before the grace period ends, then kills the rest and
/// reaps them, so that the parent exits leaving nothing behind.
fn drain(listener: TcpListener, sigchld: &OwnedFd, children: &mut Children, config: &Config) {
    drop(listener);
    let deadline = Instant::now() + GRACE_PERIOD.saturating_sub(GRACE_MARGIN);
    loop {
        reap(sigchld, children, config);
        if children.is_empty() {
            config.log(format_args!("shutdown: all children finished"));
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut fds = [pollfd(sigchld.as_raw_fd())];
        // An error here (EINTR is taken care of) leaves the deadline in charge.
        let _ = poll(&mut fds, Some(left));
    }
    config.log(format_args!(
        "shutdown: {} children still serving, killing them",
        children.len()
    ));
    for &pid in children.keys() {
        // SAFETY: plain syscall; `pid` is our unreaped child, so the pid
        // cannot have been reused by another process.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for (pid, _) in children.drain() {
        // SIGKILL cannot be caught or blocked, so each wait ends as soon as
        // the child is torn down.
        // SAFETY: plain syscall; a null status pointer is allowed.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
}
// ANCHOR_END: shutdown

fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// `poll(2)` with an optional timeout; `EINTR` (a SIGCHLD landing in this
/// thread) counts as a wake-up with nothing ready, not an error.
fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<()> {
    let ms = timeout.map_or(-1, |d| {
        d.as_millis().clamp(1, i32::MAX as u128) as libc::c_int
    });
    // SAFETY: `fds` is a live, exclusively borrowed slice of pollfd.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            for fd in fds.iter_mut() {
                fd.revents = 0;
            }
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}
