//! Pools: a few long-lived workers instead of one per job.
//!
//! Seed topics: `multiprocessing.Pool` (`apply`, `apply_async` with a
//! callback, `map`) and `concurrent.futures` `ThreadPoolExecutor` /
//! `ProcessPoolExecutor` (000 §3, 001 §7.3, 003). A pool caps how many jobs
//! run at once and pays the start-up cost once; the price is a queue where
//! jobs wait when every worker is busy.
//!
//! - [`ThreadPool`]: N threads fed by one crossbeam channel. `submit` gives a
//!   [`TaskHandle`] to wait on (synchronous use, like `apply`);
//!   `submit_with_callback` runs a callback on the worker when the job is
//!   done (like `apply_async(callback=)`, where Python runs it on a helper
//!   thread of the parent); `map` keeps input order whatever order jobs
//!   finish in.
//! - [`ProcessPool`]: N `fork(2)`ed workers, each on its own `socketpair(2)`
//!   (a duplex pipe). Jobs and results are fixed-size byte records, written
//!   with `write(2)` and read with `read(2)`. The parent may have other
//!   threads (the test harness does), so a child does only
//!   async-signal-safe things: `read`, `write`, `close_range`, `getpid`,
//!   `_exit`, and arithmetic on the stack; no allocation, no printing.
//! - rayon's `par_iter` is the idiomatic Rust answer for data-parallel work:
//!   a work-stealing pool sized to the CPUs, with order-preserving `collect`.
//!
//! Jobs cross a process boundary only as bytes: that is why Python pickles
//! the function's arguments and results for a process pool.

use crossbeam::channel::{self, Receiver, Sender};
use nix::unistd::{ForkResult, Pid, fork};

use crate::spawn_join::wait_child;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of worker threads sharing one job queue.
pub struct ThreadPool {
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

/// The pending result of a submitted job (Python's `AsyncResult`/`Future`).
pub struct TaskHandle<T> {
    result: Receiver<T>,
}

impl<T> TaskHandle<T> {
    /// Waits at most `timeout` for the result.
    pub fn wait(self, timeout: Duration) -> crate::Result<T> {
        self.result
            .recv_timeout(timeout)
            .map_err(|e| format!("no result: {e}").into())
    }
}

impl ThreadPool {
    /// Starts `n` workers named `pool-worker-<i>`.
    pub fn new(n: usize) -> std::io::Result<Self> {
        let (tx, rx) = channel::unbounded::<Job>();
        let workers = (0..n)
            .map(|i| {
                let rx = rx.clone();
                thread::Builder::new()
                    .name(format!("pool-worker-{i}"))
                    // The loop ends when the pool drops its sender.
                    .spawn(move || rx.iter().for_each(|job| job()))
            })
            .collect::<std::io::Result<_>>()?;
        Ok(ThreadPool {
            jobs: Some(tx),
            workers,
        })
    }

    fn push(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            // Cannot fail while workers hold the receiver.
            let _ = jobs.send(job);
        }
    }

    /// Queues `f`; the handle yields its result.
    pub fn submit<T, F>(&self, f: F) -> TaskHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = channel::bounded(1);
        self.push(Box::new(move || {
            let _ = tx.send(f());
        }));
        TaskHandle { result: rx }
    }

    /// Queues `f`; when it finishes, `done` runs with its result on the same
    /// worker thread. Nothing waits for it: the caller moves on at once.
    pub fn submit_with_callback<T, F, C>(&self, f: F, done: C)
    where
        F: FnOnce() -> T + Send + 'static,
        C: FnOnce(T) + Send + 'static,
        T: 'static,
    {
        self.push(Box::new(move || done(f())));
    }

    /// Applies `f` to every item on the pool; results come back in input
    /// order, whichever job finishes first. Each result waits at most
    /// `timeout`.
    pub fn map<I, T, R, F>(&self, f: F, items: I, timeout: Duration) -> crate::Result<Vec<R>>
    where
        I: IntoIterator<Item = T>,
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(T) -> R + Send + Sync + Clone + 'static,
    {
        let handles: Vec<_> = items
            .into_iter()
            .map(|item| {
                let f = f.clone();
                self.submit(move || f(item))
            })
            .collect();
        // Waiting on the handles in submission order is what keeps the order.
        handles.into_iter().map(|h| h.wait(timeout)).collect()
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        // Closing the channel lets each worker finish its queue and return.
        self.jobs = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        for w in self.workers.drain(..) {
            while !w.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(1));
            }
            if w.is_finished() {
                let _ = w.join();
            } // else: a job is stuck; detach rather than hang.
        }
    }
}

/// The job the process pool knows: the sum of `i * i` for `i` in
/// `start..end`, wrapping on overflow.
pub fn sum_squares(start: u64, end: u64) -> u64 {
    (start..end).fold(0u64, |acc, i| acc.wrapping_add(i.wrapping_mul(i)))
}

/// One result from the process pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The computed sum.
    pub value: u64,
    /// The pid of the worker process that computed it.
    pub pid: i32,
}

/// N forked worker processes computing [`sum_squares`] jobs.
pub struct ProcessPool {
    workers: Vec<(Pid, UnixStream)>,
}

impl ProcessPool {
    /// Forks `n` workers.
    pub fn new(n: usize) -> crate::Result<Self> {
        let mut pool = ProcessPool {
            workers: Vec::with_capacity(n),
        };
        for _ in 0..n {
            let (ours, theirs) = UnixStream::pair()?;
            // Five seconds is far beyond any job here; it turns a stuck
            // child into an error instead of a hang.
            ours.set_read_timeout(Some(Duration::from_secs(5)))?;
            let keep = theirs.as_raw_fd();
            // SAFETY: the child runs only `worker_loop`, which uses
            // async-signal-safe calls and never returns or unwinds.
            match unsafe { fork() }? {
                ForkResult::Child => worker_loop(keep),
                ForkResult::Parent { child } => {
                    drop(theirs);
                    pool.workers.push((child, ours));
                }
            }
        }
        Ok(pool)
    }

    /// The worker pids.
    pub fn pids(&self) -> Vec<i32> {
        self.workers.iter().map(|(pid, _)| pid.as_raw()).collect()
    }

    /// Computes every `(start, end)` job; job `i` goes to worker
    /// `i % workers`. All jobs are written first so the workers run in
    /// parallel, then results are read back in input order.
    pub fn map(&mut self, jobs: &[(u64, u64)]) -> crate::Result<Vec<Answer>> {
        let n = self.workers.len();
        if n == 0 {
            return Err("the pool has no workers".into());
        }
        for (i, &(start, end)) in jobs.iter().enumerate() {
            let mut rec = [0u8; 16];
            rec[..8].copy_from_slice(&start.to_le_bytes());
            rec[8..].copy_from_slice(&end.to_le_bytes());
            // A handful of 16-byte records fits in the socket buffer, so
            // these writes do not wait for the worker.
            self.workers[i % n].1.write_all(&rec)?;
        }
        // Each worker answers its own jobs in order; reading jobs in input
        // order therefore reads each worker's answers in order.
        let mut out = Vec::with_capacity(jobs.len());
        for i in 0..jobs.len() {
            let mut rec = [0u8; 16];
            self.workers[i % n].1.read_exact(&mut rec)?;
            let value = u64::from_le_bytes(rec[..8].try_into()?);
            let pid = u64::from_le_bytes(rec[8..].try_into()?) as i32;
            out.push(Answer { value, pid });
        }
        Ok(out)
    }
}

impl Drop for ProcessPool {
    fn drop(&mut self) {
        // Closing our end gives the worker EOF, its signal to exit.
        let pids: Vec<Pid> = self.workers.drain(..).map(|(pid, _)| pid).collect();
        for pid in pids {
            // A child that will not finish is killed; a lesson must not hang.
            let _ = wait_child(pid, Duration::from_secs(2));
        }
    }
}

/// The body of a worker process: read a job record, answer, repeat until
/// EOF. Only async-signal-safe calls, no allocation, never returns.
fn worker_loop(fd: RawFd) -> ! {
    // Drop every inherited descriptor but ours: other workers' sockets held
    // open here would keep them from ever seeing EOF.
    close_all_but(fd);
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u64;
    let mut job = [0u8; 16];
    while read_full(fd, &mut job) {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(&job[..8]);
        b.copy_from_slice(&job[8..]);
        let value = sum_squares(u64::from_le_bytes(a), u64::from_le_bytes(b));
        let mut reply = [0u8; 16];
        reply[..8].copy_from_slice(&value.to_le_bytes());
        reply[8..].copy_from_slice(&pid.to_le_bytes());
        if !write_full(fd, &reply) {
            break;
        }
    }
    // SAFETY: _exit skips atexit handlers and stdio flushing, which belong
    // to the parent; it is async-signal-safe.
    unsafe { libc::_exit(0) }
}

/// Closes every descriptor from 3 up, except `keep` (async-signal-safe).
fn close_all_but(keep: RawFd) {
    let keep = keep as libc::c_uint;
    // SAFETY: close_range only closes descriptors; nothing else in this
    // process (a single-threaded child) is using them.
    let ok = unsafe {
        (keep <= 3 || libc::syscall(libc::SYS_close_range, 3u32, keep - 1, 0u32) == 0)
            && libc::syscall(libc::SYS_close_range, keep + 1, u32::MAX, 0u32) == 0
    };
    if !ok {
        // Kernels before 5.9 lack close_range; close a plausible range.
        for fd in 3..4096 {
            if fd != keep as RawFd {
                // SAFETY: as above; closing an unused number is harmless.
                unsafe { libc::close(fd) };
            }
        }
    }
}

/// Reads exactly `buf.len()` bytes; false on EOF or error.
fn read_full(fd: RawFd, buf: &mut [u8]) -> bool {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        if n > 0 {
            got += n as usize;
        } else if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {
            continue;
        } else {
            return false;
        }
    }
    true
}

/// Writes all of `buf`; false on error.
fn write_full(fd: RawFd, buf: &[u8]) -> bool {
    let mut sent = 0;
    while sent < buf.len() {
        // SAFETY: the pointer and length describe the unsent tail of `buf`.
        let n = unsafe { libc::write(fd, buf[sent..].as_ptr().cast(), buf.len() - sent) };
        if n > 0 {
            sent += n as usize;
        } else if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {
            continue;
        } else {
            return false;
        }
    }
    true
}

/// Runs the lesson.
pub fn run() -> crate::Result {
    let timeout = Duration::from_secs(5);
    let pool = ThreadPool::new(3)?;
    let slow_square = |n: u64| {
        // Later inputs finish sooner, so completion order differs from input order.
        thread::sleep(Duration::from_millis(10 * (6 - n)));
        n * n
    };

    let h = pool.submit(move || slow_square(4));
    println!(
        "[submit]   square(4) = {} (caller waited for it)",
        h.wait(timeout)?
    );

    let (done_tx, done_rx) = channel::unbounded();
    for n in 1..=5u64 {
        let done_tx = done_tx.clone();
        pool.submit_with_callback(
            move || slow_square(n),
            move |sq| {
                let me = thread::current().name().unwrap_or("?").to_string();
                println!("[callback] square({n}) = {sq} on {me}");
                let _ = done_tx.send(n);
            },
        );
    }
    println!("[callback] 5 jobs submitted, the caller did not wait");
    for _ in 1..=5 {
        done_rx.recv_timeout(timeout)?;
    }

    let squares = pool.map(slow_square, 1..=5u64, timeout)?;
    println!("[map]      squares of 1..=5 in input order: {squares:?}");

    let mut procs = ProcessPool::new(3)?;
    let jobs: Vec<(u64, u64)> = (0..6).map(|i| (i * 1000, (i + 1) * 1000)).collect();
    let answers = procs.map(&jobs)?;
    println!("[process]  parent pid {}", std::process::id());
    for (&(s, e), a) in jobs.iter().zip(&answers) {
        println!(
            "[process]  sum of squares {s}..{e} = {} (pid {})",
            a.value, a.pid
        );
    }
    drop(procs);

    use rayon::prelude::*;
    let par: Vec<u64> = (1..=5u64).into_par_iter().map(|n| n * n).collect();
    println!("[rayon]    (1..=5).into_par_iter().map(square) = {par:?}");
    Ok(())
}
