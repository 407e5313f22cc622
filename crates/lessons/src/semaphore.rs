//! Semaphore: a lock with N slots instead of one.
//!
//! Seed topic: the five-slot semaphore (001 §6.4). A mutex is one seat; a
//! counting semaphore is a room with `N` seats. Twenty threads queue for a
//! room with five seats, sit for about 50 ms and leave; an atomic counts who
//! is inside and remembers the largest crowd, which must never exceed five.
//!
//! std has no semaphore (an unstable one was deprecated in 1.7), so we build
//! one in a few lines from a `parking_lot::Mutex<usize>` (free permits) and
//! a `Condvar` (woken when a permit comes back). Underneath, both rest on
//! `futex(2)`: FUTEX_WAIT while no permit is free, FUTEX_WAKE on release.
//! Trade-off: a semaphore bounds how many run at once, not who goes first;
//! waiters are not served in arrival order.

use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// A counting semaphore: `acquire` takes one of the free permits, waiting
/// (with a deadline) while there is none; dropping the permit gives it back.
pub struct Semaphore {
    free: Mutex<usize>,
    returned: Condvar,
}

/// One taken slot; dropping it releases the slot (like leaving `with sem:`).
pub struct Permit<'a> {
    sem: &'a Semaphore,
}

impl Semaphore {
    /// A semaphore with `permits` free slots.
    pub fn new(permits: usize) -> Self {
        Semaphore {
            free: Mutex::new(permits),
            returned: Condvar::new(),
        }
    }

    /// Takes a permit, waiting at most `timeout`; `None` if none came free.
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<Permit<'_>> {
        let deadline = Instant::now() + timeout;
        let mut free = self.free.lock();
        // A loop, not an `if`: another thread may grab the permit between
        // the wake-up and our re-taking the lock.
        while *free == 0 {
            if self.returned.wait_until(&mut free, deadline).timed_out() && *free == 0 {
                return None;
            }
        }
        *free -= 1;
        Some(Permit { sem: self })
    }

    /// How many permits are free right now (a snapshot, already stale).
    pub fn available(&self) -> usize {
        *self.free.lock()
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.sem.free.lock() += 1;
        // One permit came back, so at most one waiter can use it.
        self.sem.returned.notify_one();
    }
}

/// What the crowd at the door looked like.
#[derive(Debug, Clone)]
pub struct Crowd {
    /// Threads started.
    pub threads: usize,
    /// Slots in the semaphore.
    pub slots: usize,
    /// Threads that got in (all of them, unless one timed out).
    pub entered: usize,
    /// The largest number inside at the same moment.
    pub max_inside: usize,
    /// Wall time for everybody to get through.
    pub elapsed: Duration,
}

/// Runs `threads` threads through a semaphore of `slots`, each staying
/// inside for `stay`. `report` is called as each one enters, with its id and
/// how many are inside including it.
pub fn crowd(
    threads: usize,
    slots: usize,
    stay: Duration,
    report: impl Fn(usize, usize) + Send + Sync + 'static,
) -> crate::Result<Crowd> {
    let sem = Arc::new(Semaphore::new(slots));
    let inside = Arc::new(AtomicUsize::new(0));
    let max_inside = Arc::new(AtomicUsize::new(0));
    let entered = Arc::new(AtomicUsize::new(0));
    let report = Arc::new(report);
    // Generous: the slowest thread waits for threads/slots rounds of `stay`.
    let patience = stay * (threads as u32 + 1) + Duration::from_secs(5);
    let start = Instant::now();

    let handles: Vec<_> = (0..threads)
        .map(|id| {
            let (sem, inside, max_inside, entered, report) = (
                sem.clone(),
                inside.clone(),
                max_inside.clone(),
                entered.clone(),
                report.clone(),
            );
            thread::spawn(move || {
                let Some(permit) = sem.acquire_timeout(patience) else {
                    return;
                };
                // Counted after taking the permit and uncounted before giving
                // it back, so `inside` can never exceed the permits.
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                max_inside.fetch_max(now, Ordering::SeqCst);
                entered.fetch_add(1, Ordering::SeqCst);
                report(id, now);
                thread::sleep(stay);
                inside.fetch_sub(1, Ordering::SeqCst);
                drop(permit);
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "a thread panicked")?;
    }
    Ok(Crowd {
        threads,
        slots,
        entered: entered.load(Ordering::SeqCst),
        max_inside: max_inside.load(Ordering::SeqCst),
        elapsed: start.elapsed(),
    })
}

/// Runs the lesson.
pub fn run() -> crate::Result {
    println!("[main] 20 threads, a semaphore with 5 slots, each stays ~50 ms");
    let c = crowd(20, 5, Duration::from_millis(50), |id, now| {
        println!("[thread {id:>2}] in, {now} inside");
    })?;
    println!(
        "[main] {} of {} got in; at most {} inside at once (limit {}); took {:.0} ms",
        c.entered,
        c.threads,
        c.max_inside,
        c.slots,
        c.elapsed.as_secs_f64() * 1e3
    );
    println!("[main] 20 x 50 ms / 5 slots = 200 ms at best: the semaphore caps parallelism");
    if c.entered != c.threads || c.max_inside > c.slots {
        return Err("the semaphore let the wrong number of threads in".into());
    }
    Ok(())
}
