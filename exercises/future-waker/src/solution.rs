//! Reference solution of `future-waker`: the receiver stores the waker of
//! every poll that returns `Pending`, and the sender wakes it.
//!
//! `Pending` is a promise, not a status: "I have arranged for this task to
//! be woken when polling me again can make progress". An executor polls a
//! task only when it is new or woken (polling every pending task in a loop
//! would be the busy-poll server again), so a future that returns
//! `Pending` without handing its `Waker` to whatever will complete it is
//! never polled again. The waker is replaced on every poll, not kept from
//! the first: a task may be moved between threads or executors, or polled
//! inside a `select!` by another task's context, and only the latest
//! waker is sure to reach the task that waits now. (`will_wake` skips the
//! clone when it is the same one.)
//!
//! The check of the value and the storing of the waker happen under one
//! lock, and so do the sender's store and its taking of the waker: if the
//! receiver checked, then released the lock, then stored the waker, a
//! value sent in between would find no waker and be missed, a lost
//! wake-up as with a condition variable waited on without its mutex. The
//! wake itself is made after the lock is released, so that a woken task
//! on another thread does not at once block on the lock the waker holds.
//!
//! Syscalls: none here; an executor that runs out of work sleeps in
//! `futex(2)` (a parked thread) or `epoll_wait(2)` until a waker wakes it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// What the two halves share.
struct Shared<T> {
    value: Option<T>,
    sender_gone: bool,
    /// The waker of the last poll that returned `Pending`.
    waker: Option<Waker>,
}

/// The sending half: sends one value, or is dropped without sending.
pub struct Sender<T> {
    shared: Arc<Mutex<Shared<T>>>,
}

/// The receiving half: a future of `Some(value)`, or `None` if the sender
/// was dropped without sending.
pub struct Receiver<T> {
    shared: Arc<Mutex<Shared<T>>>,
}

/// A new one-shot channel.
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Mutex::new(Shared {
        value: None,
        sender_gone: false,
        waker: None,
    }));
    (
        Sender {
            shared: Arc::clone(&shared),
        },
        Receiver { shared },
    )
}

impl<T> Sender<T> {
    /// Sends `value` to the receiver and wakes it.
    pub fn send(self, value: T) {
        let waker = {
            let mut shared = self.shared.lock().expect("channel lock poisoned");
            shared.value = Some(value);
            shared.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        // `self` is dropped here; its waker is gone already, so the drop
        // wakes nobody twice.
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut shared = self.shared.lock().expect("channel lock poisoned");
            shared.sender_gone = true;
            shared.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut shared = self.shared.lock().expect("channel lock poisoned");
        if let Some(value) = shared.value.take() {
            return Poll::Ready(Some(value));
        }
        if shared.sender_gone {
            return Poll::Ready(None);
        }
        match &mut shared.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}
