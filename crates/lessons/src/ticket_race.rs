//! The ticket race: read, pause, write back. Without a lock tickets are
//! oversold and updates are lost; with one, never.
//!
//! Seed topic: the ticket-buying program (processes sharing a JSON file, a
//! deliberate sleep between reading the count and writing it back) and the
//! GIL counter (`tem = money; sleep(0.01); money = tem - 1` in 100 threads
//! leaves 99, not 0). The seeds' conclusion: "the GIL protects the
//! interpreter, not your data: your data needs its own lock". That holds
//! all the more on the free-threaded CPython build (PEP 703), which has no
//! GIL: the lost updates only come more often.
//!
//! Rust has no GIL, and its type system forbids the plain data race the
//! seeds rely on (two threads writing an `i32` without synchronisation does
//! not compile). But each step of a check-then-act can be individually safe
//! (an atomic load, then an atomic store) and the whole still wrong: that
//! logical race is what this lesson shows, and why a lock (or a single
//! atomic read-modify-write such as `fetch_sub`) is the fix.
//!
//! Syscalls and APIs: `fork(2)`, `pread(2)`/`pwrite(2)` (`FileExt`),
//! `flock(2)` (`nix::fcntl::Flock`), `waitpid(2)`; `AtomicU64` load/store and
//! `fetch_sub`, `std::sync::Mutex`, scoped threads.
//!
//! Trade-offs: the lock turns the sale into a queue: eight buyers with a
//! 20 ms pause take at least 8 x 20 ms = 160 ms instead of about 20 ms.
//! Correctness costs the parallelism of the critical section, so keep the
//! critical section short.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use nix::sys::wait::WaitStatus;
use nix::unistd::getpid;

use crate::spawn_join::{fork_child, read_exact_timeout, wait_child, write_all_fd};

/// Exit code of a buyer who got a ticket.
const BOUGHT: i32 = 10;
/// Exit code of a buyer who found none left.
const SOLD_OUT: i32 = 11;
/// Width of the number in the ticket file: fixed, so a rewrite never leaves
/// a stale tail behind.
const WIDTH: usize = 8;

/// The result of one sale between processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sale {
    /// Tickets in the file at the start.
    pub tickets: u32,
    /// Buyers (processes) that tried.
    pub buyers: u32,
    /// Buyers who were told they bought a ticket.
    pub sold: u32,
    /// The count left in the file at the end.
    pub left: i64,
}

/// Sells `tickets` tickets to `buyers` forked processes that all start at
/// once; with `locked` each holds `flock(LOCK_EX)` around read-pause-write.
pub fn sell_with_processes(
    tickets: u32,
    buyers: u32,
    pause: Duration,
    locked: bool,
) -> crate::Result<Sale> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "lessons-tickets-{}-{}.txt",
        getpid(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, format!("{tickets:>WIDTH$}"))?;
    let result = run_buyers(&path, buyers, pause, locked);
    let left = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let _ = std::fs::remove_file(&path);
    Ok(Sale {
        tickets,
        buyers,
        sold: result?,
        left: left.ok_or("the ticket file is unreadable")?,
    })
}

fn run_buyers(path: &Path, buyers: u32, pause: Duration, locked: bool) -> crate::Result<u32> {
    let (go_r, go_w) = nix::unistd::pipe()?;
    let mut pids = Vec::new();
    for _ in 0..buyers {
        let spawned = fork_child(|| {
            // Everybody waits for the starting gun: one byte each.
            let mut go = [0u8; 1];
            if read_exact_timeout(go_r.as_fd(), &mut go, Duration::from_secs(5)).is_err() {
                return 2;
            }
            buy(path, pause, locked)
        });
        match spawned {
            Ok(pid) => pids.push(pid),
            Err(e) => {
                let _ = write_all_fd(go_w.as_fd(), &vec![b'g'; pids.len()]);
                for pid in pids {
                    let _ = wait_child(pid, Duration::from_secs(5));
                }
                return Err(e);
            }
        }
    }
    // One write wakes every buyer at once: the race is as tight as it gets.
    write_all_fd(go_w.as_fd(), &vec![b'g'; pids.len()])?;
    let mut sold = 0;
    let mut failed = None;
    for pid in pids {
        match wait_child(pid, Duration::from_secs(10))? {
            WaitStatus::Exited(_, BOUGHT) => sold += 1,
            WaitStatus::Exited(_, SOLD_OUT) => {}
            other => failed = Some(other),
        }
    }
    match failed {
        Some(status) => Err(format!("a buyer ended with {status:?}").into()),
        None => Ok(sold),
    }
}

/// One buyer, inside a forked child: allocation-free, returns an exit code.
fn buy(path: &Path, pause: Duration, locked: bool) -> i32 {
    let Ok(file) = File::options().read(true).write(true).open(path) else {
        return 3;
    };
    // The lock lives as long as `file` (until this process exits); the
    // unlocked buyer just keeps the plain file.
    let file = if locked {
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(guard) => Either::Locked(guard),
            Err(_) => return 4,
        }
    } else {
        Either::Plain(file)
    };
    let file: &File = match &file {
        Either::Locked(g) => g,
        Either::Plain(f) => f,
    };
    let mut buf = [0u8; WIDTH];
    let count: i64 = match file.read_exact_at(&mut buf, 0) {
        Ok(()) => match std::str::from_utf8(&buf)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            Some(n) => n,
            None => return 5,
        },
        Err(_) => return 5,
    };
    // The seeds' "network delay": every unlocked buyer reads before any writes.
    thread::sleep(pause);
    if count <= 0 {
        return SOLD_OUT;
    }
    let mut text = crate::spawn_join::StackBuf::<WIDTH>::new();
    if std::fmt::Write::write_fmt(&mut text, format_args!("{:>WIDTH$}", count - 1)).is_err() {
        return 6;
    }
    match file.write_all_at(text.as_bytes(), 0) {
        Ok(()) => BOUGHT,
        Err(_) => 7,
    }
}

enum Either {
    Locked(Flock<File>),
    Plain(File),
}

// ---------------------------------------------------------------------------
// Threads: the lost update.
// ---------------------------------------------------------------------------

/// A one-shot meeting point for `n` threads whose wait is bounded (unlike
/// `std::sync::Barrier`): a thread that waits too long goes on alone.
pub struct Rendezvous {
    arrived: Mutex<usize>,
    all_here: Condvar,
    n: usize,
}

impl Rendezvous {
    /// A meeting point for `n` threads.
    pub fn new(n: usize) -> Self {
        Rendezvous {
            arrived: Mutex::new(0),
            all_here: Condvar::new(),
            n,
        }
    }

    /// Arrives and waits for the others, at most `timeout`. Returns whether
    /// everyone arrived in time.
    pub fn wait(&self, timeout: Duration) -> bool {
        let mut arrived = self.arrived.lock().unwrap_or_else(|e| e.into_inner());
        *arrived += 1;
        self.all_here.notify_all();
        let (arrived, result) = self
            .all_here
            .wait_timeout_while(arrived, timeout, |a| *a < self.n)
            .unwrap_or_else(|e| e.into_inner());
        drop(arrived);
        !result.timed_out()
    }
}

/// How a counter fared with `threads` threads each taking one off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// The value at the start (the seeds' `money = 100`).
    pub start: u64,
    /// What it should be: `start - threads`.
    pub expected: u64,
    /// What it is.
    pub result: u64,
}

/// The starting value of the shared counter.
pub const MONEY: u64 = 100;

/// Each thread: atomic load, pause, atomic store. Each step is safe; the
/// sequence is not, so updates are lost.
pub fn threads_load_store(threads: u64, pause: Duration) -> Count {
    let money = AtomicU64::new(MONEY);
    let start = Rendezvous::new(threads as usize);
    thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                start.wait(Duration::from_secs(5));
                let seen = money.load(Ordering::SeqCst);
                thread::sleep(pause);
                money.store(seen - 1, Ordering::SeqCst);
            });
        }
    });
    count(threads, money.into_inner())
}

/// The same read-pause-write, with the whole sequence under a `Mutex`.
pub fn threads_mutex(threads: u64, pause: Duration) -> Count {
    let money = Mutex::new(MONEY);
    let start = Rendezvous::new(threads as usize);
    thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                start.wait(Duration::from_secs(5));
                let mut m = money.lock().unwrap_or_else(|e| e.into_inner());
                let seen = *m;
                thread::sleep(pause);
                *m = seen - 1;
            });
        }
    });
    count(
        threads,
        money.into_inner().unwrap_or_else(|e| e.into_inner()),
    )
}

/// One indivisible read-modify-write: no lock, no lost update.
pub fn threads_fetch_sub(threads: u64) -> Count {
    let money = AtomicU64::new(MONEY);
    let start = Rendezvous::new(threads as usize);
    thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                start.wait(Duration::from_secs(5));
                money.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    count(threads, money.into_inner())
}

fn count(threads: u64, result: u64) -> Count {
    Count {
        start: MONEY,
        expected: MONEY - threads,
        result,
    }
}

/// Runs the lesson.
pub fn run() -> crate::Result {
    let pause = Duration::from_millis(20);
    println!("processes: 3 tickets in a file, 8 buyers, 20 ms between read and write");
    let s = sell_with_processes(3, 8, pause, false)?;
    println!(
        "[no lock] sold {} of {} tickets, the file says {} left  <- oversold",
        s.sold, s.tickets, s.left
    );
    let s = sell_with_processes(3, 8, pause, true)?;
    println!(
        "[flock]   sold {} of {} tickets, the file says {} left",
        s.sold, s.tickets, s.left
    );

    println!("threads: money = {MONEY}, 20 threads each take 1 off");
    let c = threads_load_store(20, Duration::from_millis(10));
    println!(
        "[load; sleep; store] money = {} (expected {})  <- lost updates",
        c.result, c.expected
    );
    let c = threads_mutex(20, Duration::from_millis(10));
    println!(
        "[Mutex around all three] money = {} (expected {})",
        c.result, c.expected
    );
    let c = threads_fetch_sub(20);
    println!("[fetch_sub] money = {} (expected {})", c.result, c.expected);
    Ok(())
}
