//! TASK: consumers wake up to an empty queue; make a woken consumer check again.
//!
//! `Queue` is an unbounded blocking queue, Python's `queue.Queue` in
//! miniature: `push` adds an item and wakes the waiting consumers, `pop`
//! takes the oldest item and waits while there is none. With one consumer
//! it works. With two consumers waiting and one item pushed, one of them
//! panics: it was woken, and the item it was woken for is gone.
//!
//! Make `pop` correct for any number of consumers, however they are woken.
//! Edit this file only. Grade with `just exercise condvar-while` (or
//! `bash scripts/exercise.sh condvar-while`).
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

    /// Adds `item` at the back and wakes the consumers waiting for one.
    pub fn push(&self, item: T) {
        self.items
            .lock()
            .expect("queue lock poisoned")
            .push_back(item);
        self.not_empty.notify_all();
    }

    /// Takes the front item if there is one, without waiting.
    pub fn try_pop(&self) -> Option<T> {
        self.items.lock().expect("queue lock poisoned").pop_front()
    }

    /// Takes the front item, waiting for one if the queue is empty.
    pub fn pop(&self) -> T {
        let mut items = self.items.lock().expect("queue lock poisoned");
        if items.is_empty() {
            items = self.not_empty.wait(items).expect("queue lock poisoned");
        }
        items
            .pop_front()
            .expect("woken by push, so an item is there")
    }
}
