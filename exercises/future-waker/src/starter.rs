//! TASK: the receiver is never polled again after Pending; register its waker.
//!
//! `channel()` makes a one-shot channel: the `Sender` sends one value (or
//! is dropped without sending), and the `Receiver` is a future that
//! resolves to `Some(value)`, or to `None` if the sender went away. The
//! future is written by hand, a state machine like the generator of the
//! coroutines lesson. Awaited after the value was sent, it works. Awaited
//! before, it returns `Pending`, the value arrives, and the task that
//! awaits it sleeps for ever: no executor polls a future again on its own.
//!
//! Make the receiver resolve whenever the value comes, on any executor.
//! Edit this file only. Grade with `just exercise future-waker` (or
//! `bash scripts/exercise.sh future-waker`).
//!
//! Syscalls: none here; an executor that runs out of work sleeps in
//! `futex(2)` (a parked thread) or `epoll_wait(2)` until a waker wakes it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// What the two halves share.
struct Shared<T> {
    value: Option<T>,
    sender_gone: bool,
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
    }));
    (
        Sender {
            shared: Arc::clone(&shared),
        },
        Receiver { shared },
    )
}

impl<T> Sender<T> {
    /// Sends `value` to the receiver.
    pub fn send(self, value: T) {
        self.shared.lock().expect("channel lock poisoned").value = Some(value);
        // `self` is dropped here, which marks the sender gone; the receiver
        // looks at the value first.
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.shared
            .lock()
            .expect("channel lock poisoned")
            .sender_gone = true;
    }
}

impl<T> Future for Receiver<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut shared = self.shared.lock().expect("channel lock poisoned");
        if let Some(value) = shared.value.take() {
            return Poll::Ready(Some(value));
        }
        if shared.sender_gone {
            return Poll::Ready(None);
        }
        // Not there yet: the executor will ask again later.
        Poll::Pending
    }
}
