//! Reference solution of `condvar-while`: wait in a `while` loop, so that a
//! consumer re-checks the condition every time it wakes.
//!
//! Being woken says only that the condition *was* true at some moment, or
//! not even that. Between `notify` and the moment the woken thread holds
//! the mutex again, another thread can take the item: a second waiter woken
//! by the same `notify_all`, or a consumer that arrived meanwhile and got
//! the mutex first, without waiting at all. And `Condvar::wait` may return
//! with no notify at all (a spurious wake-up, which POSIX and std's docs
//! allow). A waiter that treats "woken" as "the condition holds" is wrong
//! in all three cases; one that loops is right in all of them, and so
//! `notify_all` and `notify_one` become a matter of efficiency, not of
//! correctness. (`Condvar::wait_while` is the same loop, written for you.)
//! `notify_one` suits this queue: one item can satisfy one consumer, and
//! waking the others only makes them check and sleep again.
//!
//! Syscalls: `futex(2)`. `Condvar::wait` releases the mutex and sleeps
//! in one step (`FUTEX_WAIT`), `notify_*` is a `FUTEX_WAKE`, and the woken
//! thread takes the mutex again before `wait` returns.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

/// An unbounded FIFO queue whose `pop` waits for an item.
pub struct Queue<T> {
    items: Mutex<VecDeque<T>>,
    not_empty: Condvar,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self {
            items: Mutex::new(VecDeque::new()),
            not_empty: Condvar::new(),
        }
    }
}

impl<T> Queue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `item` at the back and wakes one consumer waiting for one.
    pub fn push(&self, item: T) {
        self.items
            .lock()
            .expect("queue lock poisoned")
            .push_back(item);
        self.not_empty.notify_one();
    }

    /// Takes the front item if there is one, without waiting.
    pub fn try_pop(&self) -> Option<T> {
        self.items.lock().expect("queue lock poisoned").pop_front()
    }

    /// Takes the front item, waiting for one if the queue is empty.
    pub fn pop(&self) -> T {
        let mut items = self.items.lock().expect("queue lock poisoned");
        loop {
            if let Some(item) = items.pop_front() {
                return item;
            }
            items = self.not_empty.wait(items).expect("queue lock poisoned");
        }
    }
}
