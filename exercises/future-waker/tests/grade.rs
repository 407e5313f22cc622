#![cfg(feature = "grade")]
//! Grading of `future-waker`: the receiver is polled by hand with wakers
//! that count their wake-ups (a send after `Pending` must wake the task,
//! the latest waker must be the one woken, dropping the sender must wake it
//! too), then driven by a small executor on this thread while another
//! thread sends, the test parking until woken or `WITHIN` has passed.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use ex_future_waker::channel;

/// Bound of every wait.
const WITHIN: Duration = Duration::from_secs(3);

/// A waker that counts its wake-ups and unparks the thread that made it.
struct Counting {
    wakes: AtomicUsize,
    thread: Thread,
}

impl Wake for Counting {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.thread.unpark();
    }
}

fn counting() -> (Arc<Counting>, Waker) {
    let c = Arc::new(Counting {
        wakes: AtomicUsize::new(0),
        thread: thread::current(),
    });
    (Arc::clone(&c), Waker::from(c))
}

#[test]
fn a_send_after_pending_wakes_the_task() {
    let (tx, rx) = channel::<u32>();
    let mut rx = pin!(rx);
    let (count, waker) = counting();
    let mut cx = Context::from_waker(&waker);
    assert_eq!(rx.as_mut().poll(&mut cx), Poll::Pending, "nothing sent yet");
    tx.send(7);
    assert!(
        count.wakes.load(Ordering::SeqCst) >= 1,
        "the value was sent after poll returned Pending, and nobody woke the task: \
         no executor will ever poll it again"
    );
    assert_eq!(rx.as_mut().poll(&mut cx), Poll::Ready(Some(7)));
}

#[test]
fn the_latest_waker_is_the_one_woken() {
    let (tx, rx) = channel::<&str>();
    let mut rx = pin!(rx);
    let (first, first_waker) = counting();
    let (latest, latest_waker) = counting();
    assert_eq!(
        rx.as_mut().poll(&mut Context::from_waker(&first_waker)),
        Poll::Pending
    );
    // The task moved (another executor, another thread): a new waker.
    assert_eq!(
        rx.as_mut().poll(&mut Context::from_waker(&latest_waker)),
        Poll::Pending
    );
    tx.send("hello");
    assert!(
        latest.wakes.load(Ordering::SeqCst) >= 1,
        "the send woke {} waker(s) of an older poll and not the latest one: \
         the task as it is now was never told",
        first.wakes.load(Ordering::SeqCst)
    );
    assert_eq!(
        rx.as_mut().poll(&mut Context::from_waker(&latest_waker)),
        Poll::Ready(Some("hello"))
    );
}

#[test]
fn dropping_the_sender_wakes_the_task_with_none() {
    let (tx, rx) = channel::<u32>();
    let mut rx = pin!(rx);
    let (count, waker) = counting();
    let mut cx = Context::from_waker(&waker);
    assert_eq!(rx.as_mut().poll(&mut cx), Poll::Pending);
    drop(tx);
    assert!(
        count.wakes.load(Ordering::SeqCst) >= 1,
        "the sender went away after Pending and nobody woke the task"
    );
    assert_eq!(rx.as_mut().poll(&mut cx), Poll::Ready(None));
}

/// Polls `fut` on this thread, parking between polls until woken, for at
/// most `WITHIN`; `on_pending` runs once, after the first `Pending`.
fn block_on_bounded<F: Future>(fut: F, on_pending: impl FnOnce()) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let (count, waker) = counting();
    let mut cx = Context::from_waker(&waker);
    let deadline = Instant::now() + WITHIN;
    let mut on_pending = Some(on_pending);
    let mut polled_after = 0;
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return Some(v);
        }
        if let Some(f) = on_pending.take() {
            f();
        }
        // Poll again only when woken, as every executor does.
        loop {
            let woken = count.wakes.load(Ordering::SeqCst);
            if woken > polled_after {
                polled_after = woken;
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            thread::park_timeout(left);
        }
    }
}

#[test]
fn another_thread_sends_while_the_task_waits() {
    for (i, value) in [1u64, 2, 3].into_iter().enumerate() {
        let (tx, rx) = channel();
        let mut sender = None;
        let got = block_on_bounded(rx, || {
            sender = Some(thread::spawn(move || tx.send(value)));
        });
        if let Some(s) = sender {
            s.join().expect("sender thread");
        }
        assert_eq!(
            got,
            Some(Some(value)),
            "transfer {i}: the value sent from another thread did not reach the waiting task \
             within {WITHIN:?} (None: the task was never woken)"
        );
    }
}
