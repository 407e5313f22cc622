#![cfg(feature = "grade")]
//! Grading of `condvar-while`: two consumers asleep in `pop`, one item
//! pushed (one must get it, the other must go on waiting for the next);
//! a consumer woken for an item that another thread took first (it must go
//! on waiting); and eight threads moving 4,000 items, each delivered once.
//!
//! "Asleep in `pop`" is read from the kernel, not guessed with a sleep: a
//! consumer thread reports its thread id, and the test waits (bounded)
//! until `/proc/self/task/<tid>/stat` shows it in state `S`, sleeping. The
//! only sleep `pop` has on an empty queue is the condition variable's.

use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ex_condvar_while::Queue;

/// Bound of every wait in the tests.
const WITHIN: Duration = Duration::from_secs(3);

/// The scheduler state of one of this process's threads: `R`, `S`, ...
fn thread_state(tid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // The state follows the command name, which is in parentheses and may
    // itself contain spaces or parentheses: split after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

fn wait_until_asleep(tid: i32, who: &str) {
    let deadline = Instant::now() + WITHIN;
    while thread_state(tid) != Some('S') {
        assert!(
            Instant::now() < deadline,
            "{who} did not go to sleep in pop() on an empty queue within {WITHIN:?}"
        );
        thread::yield_now();
    }
}

struct Consumer {
    tid: i32,
    got: Receiver<u32>,
    handle: JoinHandle<()>,
}

/// A thread that pops one item and sends it back.
fn consumer(q: &Arc<Queue<u32>>) -> Consumer {
    let q = Arc::clone(q);
    let (tid_tx, tid_rx) = mpsc::channel();
    let (got_tx, got) = mpsc::channel();
    let handle = thread::spawn(move || {
        tid_tx.send(nix::unistd::gettid().as_raw()).unwrap();
        let _ = got_tx.send(q.pop());
    });
    let tid = tid_rx.recv_timeout(WITHIN).expect("consumer thread start");
    Consumer { tid, got, handle }
}

/// The item `c` popped, within `WITHIN`; a panic of its thread is a failure
/// that names what went wrong.
fn item_of(c: Consumer, who: &str) -> u32 {
    match c.got.recv_timeout(WITHIN) {
        Ok(v) => {
            c.handle.join().expect("consumer thread");
            v
        }
        Err(RecvTimeoutError::Disconnected) => {
            panic!("{who} woke up, found the queue empty and did not wait again (its pop panicked)")
        }
        Err(RecvTimeoutError::Timeout) => panic!("{who} got no item within {WITHIN:?}"),
    }
}

/// `q.push(v)`, turning a poisoned lock into the failure it stands for: a
/// consumer panicked inside `pop` while holding the lock.
fn push_checked(q: &Queue<u32>, v: u32, context: &str) {
    if panic::catch_unwind(AssertUnwindSafe(|| q.push(v))).is_err() {
        panic!(
            "{context}: push found the queue's lock poisoned: a consumer panicked inside pop(), \
             having woken up to an empty queue without waiting again"
        );
    }
}

#[test]
fn two_waiters_one_item_the_other_waits_on() {
    for round in 0..3 {
        let q = Arc::new(Queue::new());
        let a = consumer(&q);
        let b = consumer(&q);
        wait_until_asleep(a.tid, "consumer a");
        wait_until_asleep(b.tid, "consumer b");

        q.push(1);
        // Whichever got the first item, the other must still be waiting,
        // and must get the second.
        let deadline = Instant::now() + WITHIN;
        let (first, second, names) = loop {
            if let Ok(v) = a.got.try_recv() {
                break (v, b, "consumer b");
            }
            if let Ok(v) = b.got.try_recv() {
                break (v, a, "consumer a");
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: neither consumer got the item pushed within {WITHIN:?}"
            );
            thread::yield_now();
        };
        assert_eq!(first, 1);
        // The other consumer was woken too (by notify_all) or not (by
        // notify_one); either way it must now be back asleep, not gone.
        let deadline = Instant::now() + WITHIN;
        while thread_state(second.tid) != Some('S') && !second.handle.is_finished() {
            assert!(
                Instant::now() < deadline,
                "round {round}: {names} neither slept nor ended"
            );
            thread::yield_now();
        }
        assert!(
            !second.handle.is_finished(),
            "round {round}: {names} was woken with the other, found the queue empty and did not wait again"
        );
        push_checked(&q, 2, &format!("round {round}"));
        assert_eq!(item_of(second, names), 2, "round {round}");
    }
}

#[test]
fn an_item_taken_first_by_another_thread_means_wait_again() {
    // A consumer is asleep in pop(); another thread spins on try_pop(), as
    // a consumer that arrives at the right moment would, and often takes
    // the pushed item before the woken consumer holds the mutex again.
    // Then the consumer must wait again, and get the next item. Rounds in
    // which the consumer wins the item prove nothing; they are counted.
    let mut taken_first = 0;
    for round in 0..30 {
        let q = Arc::new(Queue::new());
        let c = consumer(&q);
        wait_until_asleep(c.tid, "the consumer");
        let stop = Arc::new(AtomicBool::new(false));
        let barger = {
            let (q, stop) = (Arc::clone(&q), Arc::clone(&stop));
            thread::spawn(move || {
                let deadline = Instant::now() + WITHIN;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if let Some(v) = q.try_pop() {
                        return Some(v);
                    }
                    std::hint::spin_loop();
                }
                None
            })
        };
        q.push(1);
        match c.got.recv_timeout(Duration::from_millis(100)) {
            Ok(v) => {
                // The consumer won: nothing to check in this round.
                assert_eq!(v, 1);
                stop.store(true, Ordering::Relaxed);
                assert_eq!(barger.join().expect("barger"), None);
                c.handle.join().expect("consumer");
            }
            Err(_) => {
                stop.store(true, Ordering::Relaxed);
                let took = barger.join().expect("barger");
                if took.is_none() && c.handle.is_finished() {
                    panic!(
                        "round {round}: a consumer woken for an item another thread took first \
                         found the queue empty and did not wait again (its pop panicked)"
                    );
                }
                assert_eq!(took, Some(1), "round {round}: the pushed item vanished");
                taken_first += 1;
                let deadline = Instant::now() + WITHIN;
                while thread_state(c.tid) != Some('S') && !c.handle.is_finished() {
                    assert!(
                        Instant::now() < deadline,
                        "round {round}: the consumer neither slept nor ended"
                    );
                    thread::yield_now();
                }
                assert!(
                    !c.handle.is_finished(),
                    "round {round}: a consumer woken for an item another thread took first \
                     found the queue empty and did not wait again"
                );
                push_checked(&q, 2, &format!("round {round}"));
                assert_eq!(item_of(c, "the consumer, after the item was taken"), 2);
            }
        }
    }
    eprintln!("the item was taken before the woken consumer in {taken_first} of 30 rounds");
}

#[test]
fn many_producers_and_consumers_deliver_each_item_once() {
    const PER_PRODUCER: u32 = 1_000;
    let q = Arc::new(Queue::new());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let (q, seen) = (Arc::clone(&q), Arc::clone(&seen));
            thread::spawn(move || {
                loop {
                    let v: u32 = q.pop();
                    if v == u32::MAX {
                        return; // one stop marker per consumer
                    }
                    seen.lock().unwrap().push(v);
                }
            })
        })
        .collect();
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let q = Arc::clone(&q);
            thread::spawn(move || {
                for i in 0..PER_PRODUCER {
                    q.push(p * PER_PRODUCER + i);
                }
            })
        })
        .collect();
    for p in producers {
        assert!(
            p.join().is_ok(),
            "a producer's push found the queue's lock poisoned: a consumer panicked inside pop()"
        );
    }
    for _ in 0..4 {
        q.push(u32::MAX);
    }
    let deadline = Instant::now() + WITHIN;
    for c in consumers {
        while !c.is_finished() {
            assert!(
                Instant::now() < deadline,
                "consumers did not drain the queue"
            );
            thread::yield_now();
        }
        assert!(
            c.join().is_ok(),
            "a consumer panicked: it popped an empty queue"
        );
    }
    let seen = seen.lock().unwrap();
    let unique: HashSet<u32> = seen.iter().copied().collect();
    assert_eq!(
        seen.len(),
        4 * PER_PRODUCER as usize,
        "items lost or duplicated"
    );
    assert_eq!(unique.len(), seen.len(), "an item was delivered twice");
}
