//! Queues: FIFO, LIFO, priority, bounded, and a joinable queue.
//!
//! Seed topics: `queue.Queue`, `LifoQueue`, `PriorityQueue` (001 §4.1) and
//! producer–consumer with `multiprocessing.JoinableQueue` (001 §4.3).
//!
//! - FIFO is a `VecDeque` (or a crossbeam channel between threads), LIFO a
//!   `Vec` used as a stack, priority a `BinaryHeap` of `Reverse` so the
//!   smallest key comes out first, as in Python's heap-based queue.
//! - A bounded queue (`crossbeam::channel::bounded`) is back-pressure: `put`
//!   blocks while it is full and `get` while it is empty. Python's
//!   `put(timeout=)`/`get(timeout=)` are `send_timeout`/`recv_timeout`.
//! - A joinable queue also counts unfinished items: `put` adds one,
//!   `task_done` removes one, `join` waits for zero. `join` therefore means
//!   "everything put has been *processed*", not merely "taken out".
//!
//! Underneath: crossbeam's channels spin, then `sched_yield`, then park on
//! a futex; parking_lot's locks likewise spin briefly before parking. No
//! syscalls of our own. Trade-off: an unbounded queue never blocks the
//! producer, so a slow consumer turns into unbounded memory.

use crossbeam::channel::{self, Receiver, RecvTimeoutError, SendTimeoutError, Sender};
use parking_lot::{Condvar, Mutex};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Puts `items` into a FIFO queue and takes them all out: same order.
pub fn fifo<T>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut q: VecDeque<T> = VecDeque::new();
    for item in items {
        q.push_back(item);
    }
    std::iter::from_fn(|| q.pop_front()).collect()
}

/// The same FIFO, but through a channel, the queue threads share.
pub fn fifo_channel<T>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let (tx, rx) = channel::unbounded();
    for item in items {
        // Cannot fail: the receiver is alive.
        let _ = tx.send(item);
    }
    drop(tx);
    rx.iter().collect()
}

/// Puts `items` on a stack and takes them all off: reverse order.
pub fn lifo<T>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut stack: Vec<T> = items.into_iter().collect();
    std::iter::from_fn(|| stack.pop()).collect()
}

/// Puts `(priority, value)` pairs in a priority queue and takes them out:
/// smallest priority first, as with Python's `PriorityQueue`.
pub fn priority<T: Ord>(items: impl IntoIterator<Item = (i64, T)>) -> Vec<(i64, T)> {
    // BinaryHeap is a max-heap; Reverse turns it into the min-heap Python has.
    let mut heap: BinaryHeap<Reverse<(i64, T)>> = items.into_iter().map(Reverse).collect();
    std::iter::from_fn(|| heap.pop().map(|Reverse(x)| x)).collect()
}

/// What a bounded queue did at its limits.
#[derive(Debug, Clone)]
pub struct Bounded {
    /// Capacity of the queue.
    pub capacity: usize,
    /// Puts that succeeded before it was full.
    pub accepted: usize,
    /// The put on a full queue timed out (rather than succeeding).
    pub put_timed_out: bool,
    /// How long that put waited.
    pub put_waited: Duration,
    /// Values taken out, in order.
    pub taken: Vec<u32>,
    /// The get on an empty queue timed out.
    pub get_timed_out: bool,
    /// How long that get waited.
    pub get_waited: Duration,
}

/// Fills a bounded queue of `capacity`, tries one more put, drains it,
/// tries one more get; each extra attempt waits at most `patience`.
pub fn bounded(capacity: usize, patience: Duration) -> Bounded {
    let (tx, rx) = channel::bounded::<u32>(capacity);
    let mut accepted = 0;
    for v in 0..capacity as u32 {
        if tx.try_send(v).is_ok() {
            accepted += 1;
        }
    }
    let t = Instant::now();
    let put_timed_out = matches!(
        tx.send_timeout(999, patience),
        Err(SendTimeoutError::Timeout(_))
    );
    let put_waited = t.elapsed();
    let taken: Vec<u32> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    let t = Instant::now();
    let get_timed_out = matches!(rx.recv_timeout(patience), Err(RecvTimeoutError::Timeout));
    let get_waited = t.elapsed();
    Bounded {
        capacity,
        accepted,
        put_timed_out,
        put_waited,
        taken,
        get_timed_out,
        get_waited,
    }
}

/// A queue whose `join` waits until every item put has been marked done,
/// like Python's `JoinableQueue`. Clone it to share it between threads.
#[derive(Clone)]
pub struct JoinableQueue<T> {
    tx: Sender<T>,
    rx: Receiver<T>,
    unfinished: Arc<(Mutex<usize>, Condvar)>,
}

impl<T> Default for JoinableQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> JoinableQueue<T> {
    /// An empty, unbounded queue.
    pub fn new() -> Self {
        let (tx, rx) = channel::unbounded();
        JoinableQueue {
            tx,
            rx,
            unfinished: Arc::new((Mutex::new(0), Condvar::new())),
        }
    }

    /// Adds an item; it counts as unfinished until someone calls `task_done`.
    pub fn put(&self, item: T) {
        // Count first: if the item were visible before the count, a fast
        // consumer's task_done could find the count at zero.
        *self.unfinished.0.lock() += 1;
        // Cannot fail: this queue holds a receiver itself.
        let _ = self.tx.send(item);
    }

    /// Takes the next item, waiting at most `timeout`.
    pub fn get(&self, timeout: Duration) -> Option<T> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Marks one taken item as processed. Errors if called more often than
    /// `put` (Python raises `ValueError` for the same mistake).
    pub fn task_done(&self) -> crate::Result {
        let (count, all_done) = &*self.unfinished;
        let mut n = count.lock();
        if *n == 0 {
            return Err("task_done() called more times than put()".into());
        }
        *n -= 1;
        if *n == 0 {
            all_done.notify_all();
        }
        Ok(())
    }

    /// Waits at most `timeout` until every item put has had `task_done`;
    /// returns whether that happened.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        let (count, all_done) = &*self.unfinished;
        let mut n = count.lock();
        !all_done
            .wait_while_for(&mut n, |n| *n > 0, timeout)
            .timed_out()
    }

    /// Items put but not yet marked done.
    pub fn unfinished(&self) -> usize {
        *self.unfinished.0.lock()
    }
}

/// What the producer–consumer run saw.
#[derive(Debug, Clone)]
pub struct Kitchen {
    /// Items the producers put.
    pub put: usize,
    /// Items the consumers had finished at the moment `join` returned.
    pub processed_at_join: usize,
    /// Whether `join` returned before its deadline.
    pub joined: bool,
}

/// `producers` threads each put `per_producer` dishes; `consumers` threads
/// take them, spend `work` on each and call `task_done`. The main thread
/// waits for the producers, then `join`s the queue and reads the processed
/// count at that moment. `report` receives each line of the story.
pub fn kitchen(
    producers: usize,
    per_producer: usize,
    consumers: usize,
    work: Duration,
    report: impl Fn(String) + Send + Sync + 'static,
) -> crate::Result<Kitchen> {
    let q = JoinableQueue::<String>::new();
    let processed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let report = Arc::new(report);

    let cooks: Vec<_> = (0..producers)
        .map(|p| {
            let (q, report) = (q.clone(), report.clone());
            thread::spawn(move || {
                for i in 0..per_producer {
                    let dish = format!("dish {p}.{i}");
                    report(format!("[producer {p}] made {dish}"));
                    q.put(dish);
                }
            })
        })
        .collect();

    // Python makes the consumer a daemon so it dies with the main process;
    // threads here are stopped with a flag instead, and polled `get`s keep
    // every wait bounded.
    let eaters: Vec<_> = (0..consumers)
        .map(|c| {
            let (q, processed, stop, report) =
                (q.clone(), processed.clone(), stop.clone(), report.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Some(dish) = q.get(Duration::from_millis(20)) else {
                        continue;
                    };
                    thread::sleep(work);
                    report(format!("[consumer {c}] finished {dish}"));
                    // Count before task_done: join may return the instant
                    // the last task_done lands.
                    processed.fetch_add(1, Ordering::SeqCst);
                    if q.task_done().is_err() {
                        return;
                    }
                }
            })
        })
        .collect();

    for h in cooks {
        h.join().map_err(|_| "a producer panicked")?;
    }
    let put = producers * per_producer;
    report(format!(
        "[main] producers done, {} unfinished; join()",
        q.unfinished()
    ));
    let joined = q.join_timeout(work * put as u32 + Duration::from_secs(5));
    let processed_at_join = processed.load(Ordering::SeqCst);
    report(format!(
        "[main] join returned: {processed_at_join} of {put} processed"
    ));

    stop.store(true, Ordering::SeqCst);
    for h in eaters {
        h.join().map_err(|_| "a consumer panicked")?;
    }
    Ok(Kitchen {
        put,
        processed_at_join,
        joined,
    })
}

/// Runs the lesson.
pub fn run() -> crate::Result {
    println!("[fifo]     {:?}", fifo([111, 222, 333]));
    println!("[channel]  {:?}", fifo_channel([111, 222, 333]));
    println!("[lifo]     {:?}", lifo([111, 222, 333]));
    println!("[priority] {:?}", priority([(3, 111), (5, 222), (-1, 333)]));

    let b = bounded(3, Duration::from_millis(100));
    println!(
        "[bounded]  capacity {}: {} puts fit; 4th put timed out = {} after {} ms",
        b.capacity,
        b.accepted,
        b.put_timed_out,
        b.put_waited.as_millis()
    );
    println!(
        "[bounded]  took {:?}; get on empty timed out = {} after {} ms",
        b.taken,
        b.get_timed_out,
        b.get_waited.as_millis()
    );

    let k = kitchen(2, 3, 1, Duration::from_millis(30), |line| {
        println!("{line}")
    })?;
    if !k.joined || k.processed_at_join != k.put {
        return Err("join returned before every item was processed".into());
    }
    Ok(())
}
