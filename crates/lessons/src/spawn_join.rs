//! Starting a process and a thread: pids and tids, join, is_alive, terminate.
//!
//! Seed topic: `Process(target=...).start()`, `os.getpid()/getppid()`,
//! `p.join()`, `p.is_alive()`, `p.terminate()` and the same on `Thread`.
//!
//! Syscalls and APIs: `fork(2)`, `getpid(2)`, `getppid(2)`, `gettid(2)`,
//! `waitpid(2)` with and without `WNOHANG`, `kill(2)` with `SIGTERM`,
//! `pipe(2)`, `poll(2)`, `_exit(2)`; `std::thread::Builder`,
//! `JoinHandle::is_finished`, `JoinHandle::join`.
//!
//! Trade-offs: a process gets its own pid and its own memory, and can be
//! stopped from outside with a signal; its exit status says how it ended. A
//! thread shares the pid (it has its own tid) and is cheaper to start.
//! POSIX can cancel a thread from outside (`pthread_cancel(3)`), but glibc
//! does it with a forced unwind, which is undefined behaviour through Rust
//! frames with destructors, so safe Rust has no way to: a thread has to be
//! asked to stop.
//!
//! The helpers at the bottom (`fork_child`, `wait_child`, ...) are shared by
//! the other process lessons. POSIX lets a forked child of a multi-threaded
//! program (the test harness runs tests on threads) do only async-signal-safe
//! work until it `exec`s: no printing through `std::io::stdout` (its lock may
//! be held by a thread that does not exist in the child), no allocation, and
//! it ends with `_exit` so that no destructor or buffered output runs twice.
//! One child breaks the rule on purpose (`daemons::daemon_thread` creates
//! threads); it relies on glibc's `fork` resetting glibc's own locks (malloc,
//! stdio, the loader) in the child, which POSIX does not promise. No libc can
//! reset the program's own locks (std's stdout and environment locks, any
//! `Mutex`) that another thread held at the fork.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid, getppid, gettid};

/// What the parent learned about a forked child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessObservation {
    /// The parent's own pid.
    pub parent_pid: i32,
    /// The pid `fork` returned to the parent.
    pub child_pid: i32,
    /// `getpid()` as the child saw it.
    pub child_saw_pid: i32,
    /// `getppid()` as the child saw it.
    pub child_saw_ppid: i32,
    /// `waitpid(WNOHANG)` said "still alive" while the child was waiting.
    pub alive_before_join: bool,
    /// The exit code `waitpid` reported after the child returned.
    pub exit_code: Option<i32>,
    /// The signal that ended the second child, which was sent `SIGTERM`.
    pub terminated_by: Option<Signal>,
}

/// What the main thread learned about a spawned thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadObservation {
    /// The process id seen by the main thread.
    pub main_pid: i32,
    /// The main thread's kernel thread id.
    pub main_tid: i32,
    /// The process id seen inside the thread: the same process.
    pub thread_pid: i32,
    /// The spawned thread's kernel thread id.
    pub thread_tid: i32,
    /// The name given with `thread::Builder::name`.
    pub thread_name: String,
    /// `is_finished()` while the thread was still waiting for its go signal.
    pub finished_before_go: bool,
    /// The value `join` returned.
    pub joined_value: u64,
}

/// The exit code the first child ends with, so the parent can see it.
pub const CHILD_EXIT_CODE: i32 = 3;

/// Forks two children: one that is joined, one that is terminated.
pub fn observe_process() -> crate::Result<ProcessObservation> {
    let (info_r, info_w) = nix::unistd::pipe()?;
    let (go_r, go_w) = nix::unistd::pipe()?;
    let child = fork_child(|| {
        let mut msg = [0u8; 8];
        msg[..4].copy_from_slice(&getpid().as_raw().to_le_bytes());
        msg[4..].copy_from_slice(&getppid().as_raw().to_le_bytes());
        if write_all_fd(info_w.as_fd(), &msg).is_err() {
            return 10;
        }
        // Stay alive until the parent has looked: this makes the "alive"
        // check deterministic instead of a guess about scheduling.
        let mut go = [0u8; 1];
        match read_exact_timeout(go_r.as_fd(), &mut go, Duration::from_secs(5)) {
            Ok(()) => CHILD_EXIT_CODE,
            Err(_) => 11,
        }
    })?;
    drop(info_w);
    drop(go_r);

    let mut msg = [0u8; 8];
    read_exact_timeout(info_r.as_fd(), &mut msg, Duration::from_secs(5))?;
    let child_saw_pid = i32::from_le_bytes(msg[..4].try_into()?);
    let child_saw_ppid = i32::from_le_bytes(msg[4..].try_into()?);

    // WNOHANG is `is_alive()`: ask without waiting. Note that if the child had
    // already exited this call would reap it, so it is also a join.
    let alive_before_join = waitpid(child, Some(WaitPidFlag::WNOHANG))? == WaitStatus::StillAlive;
    write_all_fd(go_w.as_fd(), b"g")?;
    let exit_code = match wait_child(child, Duration::from_secs(5))? {
        WaitStatus::Exited(_, code) => Some(code),
        _ => None,
    };

    // The second child would sleep for 10 s; the parent ends it early.
    let sleeper = fork_child(|| {
        thread::sleep(Duration::from_secs(10));
        0
    })?;
    kill(sleeper, Signal::SIGTERM)?;
    let terminated_by = match wait_child(sleeper, Duration::from_secs(5))? {
        WaitStatus::Signaled(_, sig, _) => Some(sig),
        _ => None,
    };

    Ok(ProcessObservation {
        parent_pid: getpid().as_raw(),
        child_pid: child.as_raw(),
        child_saw_pid,
        child_saw_ppid,
        alive_before_join,
        exit_code,
        terminated_by,
    })
}

/// Spawns a named thread, checks `is_finished` while it waits, then joins it.
pub fn observe_thread() -> crate::Result<ThreadObservation> {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let handle = thread::Builder::new()
        .name("worker-1".into())
        .spawn(move || {
            let ids = (getpid().as_raw(), gettid().as_raw());
            let name = thread::current().name().unwrap_or("?").to_string();
            // A bounded wait: if the main thread never says go, give up.
            let value = match go_rx.recv_timeout(Duration::from_secs(5)) {
                Ok(()) => 42,
                Err(_) => 0,
            };
            (ids, name, value)
        })?;
    let finished_before_go = handle.is_finished();
    go_tx.send(())?;
    let ((thread_pid, thread_tid), thread_name, joined_value) =
        handle.join().map_err(|_| "the worker thread panicked")?;
    Ok(ThreadObservation {
        main_pid: getpid().as_raw(),
        main_tid: gettid().as_raw(),
        thread_pid,
        thread_tid,
        thread_name,
        finished_before_go,
        joined_value,
    })
}

/// Runs the lesson.
pub fn run() -> crate::Result {
    let p = observe_process()?;
    println!("[parent] my pid = {}", p.parent_pid);
    println!(
        "[child]  getpid() = {}, getppid() = {} (fork returned {} to the parent)",
        p.child_saw_pid, p.child_saw_ppid, p.child_pid
    );
    println!(
        "[parent] is_alive (waitpid WNOHANG) while the child waits: {}",
        p.alive_before_join
    );
    println!(
        "[parent] join (waitpid): the child exited with code {:?}",
        p.exit_code
    );
    println!(
        "[parent] terminate (kill SIGTERM) a sleeping child: it ended by signal {:?}",
        p.terminated_by
    );
    let t = observe_thread()?;
    println!("[main]   pid = {}, tid = {}", t.main_pid, t.main_tid);
    println!(
        "[thread] '{}': pid = {} (same process), tid = {} (its own)",
        t.thread_name, t.thread_pid, t.thread_tid
    );
    println!(
        "[main]   is_finished while the thread waits: {}",
        t.finished_before_go
    );
    println!("[main]   join returned {}", t.joined_value);
    println!("[main]   a thread has no terminate: it must be asked to stop");
    Ok(())
}

// ---------------------------------------------------------------------------
// Helpers shared by the process lessons.
// ---------------------------------------------------------------------------

/// Forks; the child runs `child` and leaves with `_exit(code)`.
///
/// `child` should stick to async-signal-safe work: raw reads and writes on
/// file descriptors, sleeping, formatting into a [`StackBuf`]. Anything more
/// (creating a thread, allocating) rests on glibc, not POSIX, and must never
/// touch a lock of the program's own.
pub(crate) fn fork_child(child: impl FnOnce() -> i32) -> crate::Result<Pid> {
    // The child branch only runs `child`, which callers keep to
    // async-signal-safe work (or, for `daemon_thread`, to glibc calls whose
    // locks glibc resets at fork), then `_exit`s without unwinding.
    // SAFETY: so the child uses no lock or buffer of the program's own that
    // another thread held at the fork, and runs no destructor.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            let code = child();
            // SAFETY: `_exit` is async-signal-safe and never returns.
            unsafe { libc::_exit(code) }
        }
    }
}

/// `waitpid` with a deadline: polls with `WNOHANG`; on timeout the child is
/// killed with `SIGKILL`, reaped, and an error is returned.
pub(crate) fn wait_child(pid: Pid, timeout: Duration) -> crate::Result<WaitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG))? {
            WaitStatus::StillAlive => {}
            status => return Ok(status),
        }
        if Instant::now() >= deadline {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return Err(format!("child {pid} did not finish within {timeout:?}").into());
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// Waits until `fd` is readable, for at most `timeout`.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<()> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: `pfd` is a valid, initialised pollfd and the count is 1.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        match n {
            0 => return Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out")),
            n if n > 0 => return Ok(()),
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
}

/// Reads exactly `buf.len()` bytes from a raw fd, giving up after `timeout`.
/// Allocation-free, so a forked child may call it.
pub(crate) fn read_exact_timeout(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    timeout: Duration,
) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        wait_readable(fd, left)?;
        match nix::unistd::read(fd, &mut buf[got..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Writes all of `buf` to a raw fd. Allocation-free.
pub(crate) fn write_all_fd(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A fixed-size text buffer: `write!` into it formats without allocating.
pub(crate) struct StackBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackBuf<N> {
    /// An empty buffer.
    pub(crate) const fn new() -> Self {
        StackBuf {
            buf: [0; N],
            len: 0,
        }
    }

    /// The bytes written so far.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl<const N: usize> fmt::Write for StackBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > N {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
