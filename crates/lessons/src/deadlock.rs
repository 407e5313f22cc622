//! Deadlock: two threads take two locks in opposite order. A timed lock
//! detects it; a reentrant lock or a global lock order prevents it.
//!
//! Seed topic: "I hold lock A and want B; you hold B and want A". The seeds'
//! fixes: replace both mutexes by one `RLock` (`mutexA = mutexB = RLock()`),
//! or always acquire in one global order, enforced by an `acquire(*locks)`
//! helper that sorts the locks by `id()` and keeps the locks each thread
//! holds in `threading.local()`, refusing to take a lower one later.
//!
//! Syscalls and APIs: `parking_lot::Mutex::try_lock_for` (a futex wait with a
//! timeout), `parking_lot::ReentrantMutex`, `thread_local!`, scoped threads.
//!
//! Trade-offs: a timeout turns a hang into an error, but only detects; the
//! caller still has to back off and retry. One reentrant lock removes the
//! deadlock by removing the concurrency between the two resources. A global
//! order keeps both locks and their parallelism, at the price of a rule every
//! caller must follow; the checked guard below turns a broken rule into an
//! immediate error instead of a rare hang.

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard, ReentrantMutex};

use crate::ticket_race::Rendezvous;

/// How one thread's attempt at its second lock ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// It got both locks.
    GotBoth,
    /// It gave up on the second lock after the timeout: "deadlock detected".
    DeadlockDetected {
        /// How long it waited before giving up.
        waited: Duration,
    },
}

/// Thread 1 takes A then B, thread 2 takes B then A. Both hold their first
/// lock before either asks for its second, so each waits for the other;
/// `try_lock_for(timeout)` turns that into a report instead of a hang.
pub fn opposite_order(timeout: Duration) -> [Attempt; 2] {
    let a = Mutex::new("A");
    let b = Mutex::new("B");
    // Both first locks are held before either thread asks for its second,
    // and kept until both have asked: the worst interleaving, every time.
    let holding = Rendezvous::new(2);
    let tried = Rendezvous::new(2);
    let attempt = |first: &Mutex<&str>, second: &Mutex<&str>| {
        let _first = first.lock();
        holding.wait(Duration::from_secs(5));
        let started = Instant::now();
        let outcome = match second.try_lock_for(timeout) {
            Some(_second) => Attempt::GotBoth,
            None => Attempt::DeadlockDetected {
                waited: started.elapsed(),
            },
        };
        tried.wait(Duration::from_secs(5));
        outcome
    };
    thread::scope(|s| {
        let t1 = s.spawn(|| attempt(&a, &b));
        let t2 = s.spawn(|| attempt(&b, &a));
        [join(t1), join(t2)]
    })
}

fn join(h: thread::ScopedJoinHandle<'_, Attempt>) -> Attempt {
    h.join().unwrap_or(Attempt::GotBoth)
}

/// Fix 1: both names refer to one `ReentrantMutex`. Each of two threads runs
/// the seeds' `task1` (A then B) and `task2` (B then A) `rounds` times.
/// Returns how many rounds each thread completed.
pub fn reentrant(rounds: u32) -> [u32; 2] {
    let lock = ReentrantMutex::new(());
    let (mutex_a, mutex_b) = (&lock, &lock);
    let wait = Duration::from_secs(2);
    let worker = || {
        let mut done = 0;
        for _ in 0..rounds {
            // task1: A then B. The second acquire is by the same thread, so
            // it only bumps the lock's count.
            let Some(_a) = mutex_a.try_lock_for(wait) else {
                break;
            };
            let Some(_b) = mutex_b.try_lock_for(wait) else {
                break;
            };
            drop((_b, _a));
            // task2: B then A.
            let Some(_b) = mutex_b.try_lock_for(wait) else {
                break;
            };
            let Some(_a) = mutex_a.try_lock_for(wait) else {
                break;
            };
            done += 1;
        }
        done
    };
    thread::scope(|s| {
        let t1 = s.spawn(worker);
        let t2 = s.spawn(worker);
        [t1.join().unwrap_or(0), t2.join().unwrap_or(0)]
    })
}

/// Whether one thread can take a lock it already holds: a plain mutex
/// cannot (it would wait for itself), a reentrant one can.
pub fn relock_same_thread() -> (bool, bool) {
    let plain = Mutex::new(());
    let _held = plain.lock();
    let plain_again = plain.try_lock_for(Duration::from_millis(50)).is_some();
    let re = ReentrantMutex::new(());
    let _held = re.lock();
    let re_again = re.try_lock_for(Duration::from_millis(50)).is_some();
    (plain_again, re_again)
}

// ---------------------------------------------------------------------------
// Fix 2: one global order, checked per thread.
// ---------------------------------------------------------------------------

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The ids of the ordered locks this thread holds, in acquisition order.
    static HELD: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// A mutex with a place in the global lock order: its creation number.
pub struct OrderedLock {
    id: u64,
    name: &'static str,
    inner: Mutex<()>,
}

impl OrderedLock {
    /// A new lock, ordered after every lock created before it.
    pub fn new(name: &'static str) -> Self {
        OrderedLock {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            name,
            inner: Mutex::new(()),
        }
    }

    /// Its position in the global order.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Its name, for messages.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// Why [`acquire`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcquireError {
    /// The thread already holds a lock at or after one it asked for: taking
    /// it now could deadlock against a thread following the order.
    OutOfOrder {
        /// The highest id already held.
        held: u64,
        /// The lowest id asked for.
        wanted: u64,
    },
    /// A lock stayed busy for the whole timeout.
    TimedOut {
        /// The lock that could not be taken.
        lock: &'static str,
    },
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireError::OutOfOrder { held, wanted } => write!(
                f,
                "lock order violated: holding #{held}, asked for #{wanted}"
            ),
            AcquireError::TimedOut { lock } => write!(f, "lock {lock} stayed busy"),
        }
    }
}

impl std::error::Error for AcquireError {}

/// The locks taken by one [`acquire`]; dropping it releases them in reverse
/// order and forgets them in the thread's record.
pub struct Held<'a> {
    guards: Vec<MutexGuard<'a, ()>>,
    ids: Vec<u64>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        while let Some(g) = self.guards.pop() {
            drop(g);
        }
        HELD.with(|held| held.borrow_mut().retain(|id| !self.ids.contains(id)));
    }
}

/// Takes `locks` in global order, whatever order they are given in. Refuses
/// with [`AcquireError::OutOfOrder`] if this thread already holds a lock
/// that comes at or after the first of them.
pub fn acquire<'a>(locks: &[&'a OrderedLock], timeout: Duration) -> Result<Held<'a>, AcquireError> {
    let mut sorted = locks.to_vec();
    sorted.sort_by_key(|l| l.id);
    let Some(first) = sorted.first() else {
        return Ok(Held {
            guards: Vec::new(),
            ids: Vec::new(),
        });
    };
    let held_max = HELD.with(|h| h.borrow().iter().copied().max());
    if let Some(held) = held_max.filter(|&h| h >= first.id) {
        return Err(AcquireError::OutOfOrder {
            held,
            wanted: first.id,
        });
    }
    // The same lock twice in one call would wait for itself.
    if let Some(w) = sorted.windows(2).find(|w| w[0].id == w[1].id) {
        return Err(AcquireError::OutOfOrder {
            held: w[0].id,
            wanted: w[1].id,
        });
    }
    let mut guards = Vec::with_capacity(sorted.len());
    for lock in &sorted {
        match lock.inner.try_lock_for(timeout) {
            Some(g) => guards.push(g),
            // `guards` drops here, releasing what was taken.
            None => return Err(AcquireError::TimedOut { lock: lock.name }),
        }
    }
    let ids: Vec<u64> = sorted.iter().map(|l| l.id).collect();
    HELD.with(|h| h.borrow_mut().extend(&ids));
    Ok(Held { guards, ids })
}

/// Two threads ask for (X, Y) and (Y, X) `rounds` times; `acquire` sorts both
/// requests into the same order. Returns the rounds each completed.
pub fn ordered(rounds: u32) -> [u32; 2] {
    let x = OrderedLock::new("X");
    let y = OrderedLock::new("Y");
    let worker = |locks: [&OrderedLock; 2]| {
        let mut done = 0;
        for _ in 0..rounds {
            match acquire(&locks, Duration::from_secs(2)) {
                Ok(_both) => done += 1,
                Err(_) => break,
            }
        }
        done
    };
    thread::scope(|s| {
        let t1 = s.spawn(|| worker([&x, &y]));
        let t2 = s.spawn(|| worker([&y, &x]));
        [t1.join().unwrap_or(0), t2.join().unwrap_or(0)]
    })
}

/// The seeds' nested case: `acquire(x)` then inside it `acquire(y)` follows
/// the order; `acquire(y)` then `acquire(x)` is refused.
pub fn nested() -> (Result<(), AcquireError>, Result<(), AcquireError>) {
    let x = OrderedLock::new("X");
    let y = OrderedLock::new("Y");
    let t = Duration::from_secs(1);
    let in_order = acquire(&[&x], t).and_then(|_x| acquire(&[&y], t).map(drop));
    let reversed = acquire(&[&y], t).and_then(|_y| acquire(&[&x], t).map(drop));
    (in_order, reversed)
}

/// Runs the lesson.
pub fn run() -> crate::Result {
    println!("two threads, locks A and B taken in opposite order");
    let attempts = opposite_order(Duration::from_millis(200));
    for (i, a) in attempts.iter().enumerate() {
        let (first, second) = if i == 0 { ("A", "B") } else { ("B", "A") };
        match a {
            Attempt::GotBoth => println!("[thread {}] holds {first}, got {second}", i + 1),
            Attempt::DeadlockDetected { waited } => println!(
                "[thread {}] holds {first}, waited {} ms for {second}: deadlock detected, backing off",
                i + 1,
                waited.as_millis()
            ),
        }
    }

    let (plain, re) = relock_same_thread();
    println!("[main] lock a plain Mutex twice in one thread: {plain}; a ReentrantMutex: {re}");
    let done = reentrant(1000);
    println!(
        "fix 1, one ReentrantMutex for A and B: rounds completed {} and {} of 1000",
        done[0], done[1]
    );

    let done = ordered(1000);
    println!(
        "fix 2, acquire() sorts by lock id: (X,Y) and (Y,X) threads completed {} and {} of 1000",
        done[0], done[1]
    );
    let (in_order, reversed) = nested();
    println!("[main] acquire(X) then acquire(Y): {in_order:?}");
    match reversed {
        Ok(()) => println!("[main] acquire(Y) then acquire(X): Ok?!"),
        Err(e) => println!("[main] acquire(Y) then acquire(X): refused: {e}"),
    }
    Ok(())
}
