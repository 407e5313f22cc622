//! Who waits for whom: daemon threads, children that die with their parent,
//! and zombies.
//!
//! Seed topic: `t.daemon = True` and `p.daemon = True`. The seeds' rule: the
//! main thread is "done" only when every non-daemon thread is done, and then
//! the whole process goes, daemon threads included, mid-sentence. A daemon
//! process is killed when the main process's code ends; a non-daemon child is
//! waited for, "otherwise it would become a zombie".
//!
//! Syscalls and APIs: `pthread_create(3)` + `pthread_detach(3)` (a detached
//! thread: Rust's dropped `JoinHandle`), `pthread_join(3)`, `exit_group(2)`
//! (what returning from `main` does), `prctl(PR_SET_PDEATHSIG)`, `fork(2)`,
//! `kill(2)`, `waitpid(2)`, and `/proc/<pid>/stat` to read a process state.
//!
//! In Rust every thread is a daemon in Python's sense: `std` waits for no
//! thread when `main` returns, whether its `JoinHandle` was dropped or kept;
//! dropping the handle only means nobody can join it. Python's default is the
//! opposite (`daemon=False`: the interpreter joins the thread before exit).
//!
//! Trade-offs: a detached thread costs nothing to manage but can be cut off
//! at any instruction, so it must never hold work that has to finish (a half
//! written file). Linux has no "daemon child" flag: `PR_SET_PDEATHSIG` asks
//! the kernel to signal a child when its parent dies, which is the closest
//! thing; it is Linux-only and fires when the creating *thread* exits. A
//! child that is not waited for stays a zombie (a pid and an exit status)
//! until its parent reaps it or dies.

use std::ffi::c_void;
use std::fmt::Write as _;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Pid, getpid, getppid};

use crate::spawn_join::{
    StackBuf, fork_child, read_exact_timeout, wait_child, wait_readable, write_all_fd,
};

// ---------------------------------------------------------------------------
// (a) A detached thread is cut off when the process ends.
// ---------------------------------------------------------------------------

/// The output of a child whose main returned while a detached thread ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonThreadRun {
    /// Every line the child printed, in order.
    pub lines: Vec<String>,
    /// How many "tick" lines the detached thread printed before the end.
    pub daemon_ticks: usize,
    /// The detached thread printed its "finished" line (it should not).
    pub daemon_finished: bool,
    /// The joined thread printed its "finished" line (it should).
    pub worker_finished: bool,
}

/// How many ticks the detached thread would print if it were allowed to.
pub const DAEMON_TICKS_WANTED: usize = 100;

extern "C" fn daemon_ticker(arg: *mut c_void) -> *mut c_void {
    let fd = arg as usize as i32;
    // SAFETY: the fd stays open for the life of the child process, which is
    // at least the life of this thread (the thread dies with the process).
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    for i in 1..=DAEMON_TICKS_WANTED {
        let mut line = StackBuf::<48>::new();
        let _ = writeln!(line, "[daemon thread] tick {i}");
        let _ = write_all_fd(fd, line.as_bytes());
        thread::sleep(Duration::from_millis(20));
    }
    let _ = write_all_fd(fd, b"[daemon thread] finished\n");
    std::ptr::null_mut()
}

extern "C" fn joined_worker(arg: *mut c_void) -> *mut c_void {
    let fd = arg as usize as i32;
    // SAFETY: the main thread of the child joins this thread before the fd
    // could be closed, and the fd is only closed by process exit.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    thread::sleep(Duration::from_millis(80));
    let _ = write_all_fd(fd, b"[worker thread] finished\n");
    std::ptr::null_mut()
}

/// Starts a raw pthread running `f(fd)`. Plain pthreads rather than
/// `std::thread`, whose `spawn` takes std's own locks (the environment's, for
/// `RUST_MIN_STACK`) that another thread may have held at the fork. Even
/// `pthread_create` is not async-signal-safe: it allocates a stack and takes
/// glibc's stack-cache lock, which works in a forked child only because
/// glibc's `fork` resets that lock and its malloc locks in the child.
fn start_pthread(f: extern "C" fn(*mut c_void) -> *mut c_void, fd: i32) -> Option<libc::pthread_t> {
    let mut tid: libc::pthread_t = 0;
    // SAFETY: `tid` is a valid out-pointer, default attributes (null) are
    // allowed, and `f` only uses the fd number passed as its argument.
    let rc =
        unsafe { libc::pthread_create(&mut tid, std::ptr::null(), f, fd as usize as *mut c_void) };
    (rc == 0).then_some(tid)
}

/// Runs a child whose main thread starts a detached ticker thread and a
/// joined worker thread, joins the worker, and returns.
pub fn daemon_thread() -> crate::Result<DaemonThreadRun> {
    let (r, w) = nix::unistd::pipe()?;
    let child = fork_child(|| {
        let fd = w.as_raw_fd();
        let say = |s: &[u8]| {
            let _ = write_all_fd(w.as_fd(), s);
        };
        let Some(ticker) = start_pthread(daemon_ticker, fd) else {
            return 2;
        };
        // SAFETY: `ticker` was just created and is neither joined nor
        // detached yet. Detaching is what dropping a `JoinHandle` does.
        unsafe { libc::pthread_detach(ticker) };
        let Some(worker) = start_pthread(joined_worker, fd) else {
            return 3;
        };
        say(b"[child main] started a detached ticker and a worker; joining the worker\n");
        // SAFETY: `worker` is a joinable thread created above, joined once.
        unsafe { libc::pthread_join(worker, std::ptr::null_mut()) };
        say(b"[child main] worker joined; main returns now\n");
        // Returning from main means exit_group: every thread stops here.
        0
    })?;
    drop(w);

    // Read until end-of-file. Another test's child forked meanwhile may hold
    // a copy of the write end for a moment, so also stop once our child is
    // reaped and the pipe has gone quiet.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut out = Vec::new();
    let mut reaped = None;
    while Instant::now() < deadline {
        if wait_readable(r.as_fd(), Duration::from_millis(100)).is_ok() {
            let mut buf = [0u8; 1024];
            match nix::unistd::read(&r, &mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        } else if reaped.is_some() {
            break;
        }
        if reaped.is_none() {
            match waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG))? {
                WaitStatus::StillAlive => {}
                status => reaped = Some(status),
            }
        }
    }
    let status = match reaped {
        Some(s) => s,
        None => wait_child(child, Duration::from_secs(2))?,
    };
    if status != WaitStatus::Exited(child, 0) {
        return Err(format!("the child ended with {status:?}").into());
    }
    let lines: Vec<String> = String::from_utf8_lossy(&out)
        .lines()
        .map(str::to_string)
        .collect();
    Ok(DaemonThreadRun {
        daemon_ticks: lines
            .iter()
            .filter(|l| l.starts_with("[daemon thread] tick"))
            .count(),
        daemon_finished: lines.iter().any(|l| l == "[daemon thread] finished"),
        worker_finished: lines.iter().any(|l| l == "[worker thread] finished"),
        lines,
    })
}

// ---------------------------------------------------------------------------
// (b) PR_SET_PDEATHSIG: a grandchild that dies with its parent.
// ---------------------------------------------------------------------------

/// What the top process saw after the middle process exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeathSignalRun {
    /// The grandchild marked with `PR_SET_PDEATHSIG(SIGKILL)`.
    pub marked_pid: i32,
    /// The grandchild without the mark.
    pub unmarked_pid: i32,
    /// The marked grandchild was gone (or a zombie) soon after its parent.
    pub marked_died: bool,
    /// The unmarked grandchild was still running at that moment.
    pub unmarked_survived: bool,
}

/// Whether a process still runs: false if it is gone or a zombie.
pub fn is_running(pid: i32) -> bool {
    matches!(proc_state(pid), Some(s) if s != 'Z' && s != 'X')
}

/// The state letter of `/proc/<pid>/stat` (R, S, Z, ...), if the pid exists.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain them.
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// Forks a middle process that forks two grandchildren, one marked with
/// `PR_SET_PDEATHSIG`, then exits. Watches which grandchild outlives it.
pub fn death_signal() -> crate::Result<DeathSignalRun> {
    let (r, w) = nix::unistd::pipe()?;
    let middle = fork_child(|| {
        let me = getpid();
        let (ready_r, ready_w) = match nix::unistd::pipe() {
            Ok(p) => p,
            Err(_) => return 2,
        };
        let grandchild = |marked: bool| {
            fork_child(|| {
                if marked && nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() {
                    return 2;
                }
                // If the parent died before prctl, the signal will never come.
                if getppid() != me {
                    return 3;
                }
                let _ = write_all_fd(ready_w.as_fd(), b"r");
                // Bounded even if nobody kills it.
                for _ in 0..60 {
                    thread::sleep(Duration::from_millis(50));
                }
                0
            })
        };
        let (Ok(marked), Ok(unmarked)) = (grandchild(true), grandchild(false)) else {
            return 4;
        };
        let mut ready = [0u8; 2];
        if read_exact_timeout(ready_r.as_fd(), &mut ready, Duration::from_secs(3)).is_err() {
            return 5;
        }
        let mut msg = [0u8; 8];
        msg[..4].copy_from_slice(&marked.as_raw().to_le_bytes());
        msg[4..].copy_from_slice(&unmarked.as_raw().to_le_bytes());
        if write_all_fd(w.as_fd(), &msg).is_err() {
            return 6;
        }
        // The middle process exits without waiting for its children.
        0
    })?;
    drop(w);
    let mut msg = [0u8; 8];
    let read = read_exact_timeout(r.as_fd(), &mut msg, Duration::from_secs(5));
    let status = wait_child(middle, Duration::from_secs(5))?;
    read?;
    if status != WaitStatus::Exited(middle, 0) {
        return Err(format!("the middle process ended with {status:?}").into());
    }
    let marked_pid = i32::from_le_bytes(msg[..4].try_into()?);
    let unmarked_pid = i32::from_le_bytes(msg[4..].try_into()?);

    let deadline = Instant::now() + Duration::from_secs(2);
    while is_running(marked_pid) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    let marked_died = !is_running(marked_pid);
    let unmarked_survived = is_running(unmarked_pid);
    // Not our child (it was reparented), so we cannot reap it: just end it.
    let _ = kill(Pid::from_raw(unmarked_pid), Signal::SIGKILL);
    Ok(DeathSignalRun {
        marked_pid,
        unmarked_pid,
        marked_died,
        unmarked_survived,
    })
}

// ---------------------------------------------------------------------------
// (c) Zombies: exited, not yet waited for.
// ---------------------------------------------------------------------------

/// The life of a child that is reaped late.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZombieRun {
    /// The child's pid.
    pub pid: i32,
    /// Its state letter after it exited and before `waitpid`.
    pub state_before_wait: Option<char>,
    /// The exit code `waitpid` collected.
    pub exit_code: Option<i32>,
    /// Its state after `waitpid` (`None`: the pid is gone).
    pub state_after_wait: Option<char>,
}

/// The code the zombie child exits with.
pub const ZOMBIE_EXIT_CODE: i32 = 7;

/// Forks a child that exits at once, looks at it before and after reaping.
pub fn zombie() -> crate::Result<ZombieRun> {
    let child = fork_child(|| ZOMBIE_EXIT_CODE)?;
    let pid = child.as_raw();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut state = proc_state(pid);
    while state != Some('Z') && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(2));
        state = proc_state(pid);
    }
    let exit_code = match wait_child(child, Duration::from_secs(2))? {
        WaitStatus::Exited(_, code) => Some(code),
        _ => None,
    };
    Ok(ZombieRun {
        pid,
        state_before_wait: state,
        exit_code,
        state_after_wait: proc_state(pid),
    })
}

/// Runs the lesson.
pub fn run() -> crate::Result {
    println!("(a) a detached (daemon) thread when main returns");
    let d = daemon_thread()?;
    for l in &d.lines {
        println!("  {l}");
    }
    println!(
        "[parent] the daemon thread printed {} of {DAEMON_TICKS_WANTED} ticks and {} its last line",
        d.daemon_ticks,
        if d.daemon_finished {
            "printed"
        } else {
            "never printed"
        }
    );

    println!("(b) PR_SET_PDEATHSIG: grandchildren of a process that exits");
    let s = death_signal()?;
    println!(
        "[top] marked grandchild {}: {}",
        s.marked_pid,
        if s.marked_died {
            "killed when its parent exited"
        } else {
            "still running?!"
        }
    );
    println!(
        "[top] unmarked grandchild {}: {} (now killed by us)",
        s.unmarked_pid,
        if s.unmarked_survived {
            "orphaned but still running"
        } else {
            "gone?!"
        }
    );

    println!("(c) a zombie: exited, not yet waited for");
    let z = zombie()?;
    println!(
        "[parent] child {} exited; /proc state before waitpid: {:?}",
        z.pid, z.state_before_wait
    );
    println!(
        "[parent] waitpid collected exit code {:?}; /proc state after: {:?}",
        z.exit_code, z.state_after_wait
    );
    Ok(())
}
