//! CPU-bound vs I/O-bound work on processes, threads and rayon, timed.
//!
//! Seed topic: "multiprocessing vs multithreading" (001 §7.2, 000 intro).
//! In CPython's default build the GIL lets only one thread run Python code
//! at a time (the free-threaded build, PEP 703, has no GIL), so the
//! seeds find processes faster for CPU-bound jobs and threads good enough
//! (and cheaper) for I/O-bound ones. Rust has no GIL: threads of one process
//! run on every core at once, so for CPU-bound work threads scale as well as
//! processes do, without the `fork(2)` and the copying of results through a
//! pipe. For I/O-bound work (here: sleeping, the purest form of waiting)
//! the number of cores does not matter; the number of waiters does.
//!
//! This is a benchmark command, not a test: wall times on a shared machine
//! are noisy. The tests only check that every strategy computes the same
//! answers. Syscalls: `fork(2)`, `socketpair(2)`, `read(2)`/`write(2)`,
//! `waitpid(2)`, `nanosleep(2)`; threads via `clone(2)` inside std.

use nix::unistd::{ForkResult, Pid, fork};

use crate::spawn_join::wait_child;
use rayon::prelude::*;
use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

/// One piece of work; a job is several pieces, numbered from 0.
#[derive(Debug, Clone, Copy)]
pub enum Work {
    /// `iters` rounds of xorshift arithmetic: pure CPU.
    Cpu {
        /// Rounds per piece.
        iters: u64,
    },
    /// Sleeps for `wait`: pure waiting, as a slow disk or network would.
    Io {
        /// How long each piece waits.
        wait: Duration,
    },
}

impl Work {
    /// Computes piece `piece`. Allocation-free and async-signal-safe
    /// (arithmetic, or `nanosleep`), so a forked child may call it.
    pub fn compute(self, piece: u64) -> u64 {
        match self {
            Work::Cpu { iters } => cpu_piece(piece, iters),
            Work::Io { wait } => {
                thread::sleep(wait);
                piece * 1_000 + 7
            }
        }
    }
}

/// The CPU-bound kernel: a xorshift chain. Each step depends on the last,
/// so the compiler cannot vectorise it away.
pub fn cpu_piece(piece: u64, iters: u64) -> u64 {
    let mut x = piece.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut acc = 0u64;
    for i in 0..iters {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        acc = acc.wrapping_add(x ^ i);
    }
    acc
}

/// How the pieces are spread out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// One after another on the calling thread.
    Sequential,
    /// `n` forked processes; process `j` does pieces `j, j+n, ...`.
    Processes(usize),
    /// `n` scoped threads, split the same way.
    Threads(usize),
    /// rayon's global pool (one thread per CPU).
    Rayon,
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Strategy::Sequential => write!(f, "sequential"),
            Strategy::Processes(n) => write!(f, "{n} processes"),
            Strategy::Threads(n) => write!(f, "{n} threads"),
            Strategy::Rayon => write!(f, "rayon ({} thr)", rayon::current_num_threads()),
        }
    }
}

/// Results (in piece order) and the wall time they took.
#[derive(Debug, Clone)]
pub struct Timed {
    /// One result per piece, in piece order.
    pub results: Vec<u64>,
    /// Wall time from start to the last result.
    pub elapsed: Duration,
}

/// Runs `pieces` pieces of `work` with `strategy`.
pub fn run_with(strategy: Strategy, work: Work, pieces: usize) -> crate::Result<Timed> {
    let start = Instant::now();
    let results = match strategy {
        Strategy::Sequential => (0..pieces as u64).map(|p| work.compute(p)).collect(),
        Strategy::Threads(n) => threads(n, work, pieces)?,
        Strategy::Processes(n) => processes(n, work, pieces)?,
        Strategy::Rayon => (0..pieces as u64)
            .into_par_iter()
            .map(|p| work.compute(p))
            .collect(),
    };
    Ok(Timed {
        results,
        elapsed: start.elapsed(),
    })
}

/// The pieces worker `j` of `n` does.
fn share(j: usize, n: usize, pieces: usize) -> impl Iterator<Item = u64> {
    (j..pieces).step_by(n).map(|p| p as u64)
}

fn threads(n: usize, work: Work, pieces: usize) -> crate::Result<Vec<u64>> {
    let n = n.max(1);
    // scope() joins every thread before it returns; a panicked worker
    // shows up as a failed join rather than a lost result.
    let parts: Vec<Option<Vec<u64>>> = thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|j| s.spawn(move || share(j, n, pieces).map(|p| work.compute(p)).collect()))
            .collect();
        handles.into_iter().map(|h| h.join().ok()).collect()
    });
    let mut results = vec![0u64; pieces];
    for (j, part) in parts.into_iter().enumerate() {
        let part = part.ok_or("a worker thread panicked")?;
        for (p, r) in share(j, n, pieces).zip(part) {
            results[p as usize] = r;
        }
    }
    Ok(results)
}

fn processes(n: usize, work: Work, pieces: usize) -> crate::Result<Vec<u64>> {
    let n = n.max(1);
    let mut children: Vec<(Pid, UnixStream)> = Vec::with_capacity(n);
    let mut results = vec![0u64; pieces];
    let outcome = (|| -> crate::Result {
        for j in 0..n {
            let (ours, theirs) = UnixStream::pair()?;
            // A generous bound: a stuck child becomes an error, not a hang.
            ours.set_read_timeout(Some(Duration::from_secs(60)))?;
            let fd = theirs.as_raw_fd();
            // SAFETY: the child runs only `child_body` (arithmetic or
            // nanosleep, then write and _exit): async-signal-safe, no
            // allocation, no return.
            match unsafe { fork() }? {
                ForkResult::Child => child_body(fd, j, n, work, pieces),
                ForkResult::Parent { child } => children.push((child, ours)),
            }
        }
        for (j, (_, sock)) in children.iter_mut().enumerate() {
            for p in share(j, n, pieces) {
                let mut rec = [0u8; 8];
                sock.read_exact(&mut rec)?;
                results[p as usize] = u64::from_le_bytes(rec);
            }
        }
        Ok(())
    })();
    for (pid, _) in children {
        // A child that will not finish is killed; a lesson must not hang.
        let _ = wait_child(pid, Duration::from_secs(2));
    }
    outcome?;
    Ok(results)
}

/// A forked child: compute its share, write each result, `_exit`.
fn child_body(fd: RawFd, j: usize, n: usize, work: Work, pieces: usize) -> ! {
    for p in share(j, n, pieces) {
        let rec = work.compute(p).to_le_bytes();
        let mut sent = 0;
        while sent < rec.len() {
            // SAFETY: pointer and length describe the unsent tail of `rec`.
            let w = unsafe { libc::write(fd, rec[sent..].as_ptr().cast(), rec.len() - sent) };
            if w <= 0 {
                // SAFETY: async-signal-safe exit without the parent's atexit work.
                unsafe { libc::_exit(1) };
            }
            sent += w as usize;
        }
    }
    // SAFETY: as above.
    unsafe { libc::_exit(0) }
}

/// Picks `iters` so one CPU piece takes about `target` on this machine in
/// this build (a debug build is many times slower than `--release`).
pub fn calibrate(target: Duration) -> u64 {
    let mut iters = 1u64 << 14;
    loop {
        let t = Instant::now();
        std::hint::black_box(cpu_piece(1, iters));
        let took = t.elapsed();
        if took >= Duration::from_millis(20) || iters >= 1 << 40 {
            let per_iter = took.as_secs_f64() / iters as f64;
            return ((target.as_secs_f64() / per_iter) as u64).max(1);
        }
        iters *= 4;
    }
}

/// Runs the lesson: both jobs under every strategy, with speedups.
pub fn run() -> crate::Result {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "[main] CPUs available: {cpus}; rayon threads: {}",
        rayon::current_num_threads()
    );
    let pieces = 4;
    let iters = calibrate(Duration::from_millis(75));
    println!("[main] CPU job: 4 pieces x {iters} xorshift rounds (~0.3 s on one core), best of 3");
    println!("[main] I/O job: 4 pieces x 100 ms sleep");
    let strategies = [
        Strategy::Sequential,
        Strategy::Processes(2),
        Strategy::Threads(2),
        Strategy::Threads(4),
        Strategy::Rayon,
    ];
    for (label, work) in [
        ("cpu", Work::Cpu { iters }),
        (
            "i/o",
            Work::Io {
                wait: Duration::from_millis(100),
            },
        ),
    ] {
        // CPU timings are the best of three rounds, each round running every
        // strategy once: on a shared machine a burst of someone else's load
        // then spoils one sample of each strategy, not all samples of one.
        // Sleeps vary little, so the I/O job runs once.
        let rounds = if label == "cpu" { 3 } else { 1 };
        let mut best: Vec<Option<Timed>> = vec![None; strategies.len()];
        for _ in 0..rounds {
            for (s, slot) in strategies.iter().zip(&mut best) {
                let t = run_with(*s, work, pieces)?;
                match slot {
                    Some(b) if b.results != t.results => {
                        return Err(format!("{s} is not deterministic").into());
                    }
                    Some(b) if b.elapsed <= t.elapsed => {}
                    _ => *slot = Some(t),
                }
            }
        }
        let best: Vec<Timed> = best.into_iter().flatten().collect();
        let base = &best[0];
        for (s, t) in strategies.iter().zip(&best) {
            if t.results != base.results {
                return Err(format!("{s} computed different results").into());
            }
            println!(
                "[{label}] {:<16} {:>6.3} s   speedup x{:.2}",
                s.to_string(),
                t.elapsed.as_secs_f64(),
                base.elapsed.as_secs_f64() / t.elapsed.as_secs_f64()
            );
        }
    }
    println!("[main] no GIL: threads speed up CPU work like processes, up to the core count");
    println!("[main] waiting needs no core: 4 threads finish 4 sleeps in one sleep's time");
    Ok(())
}
