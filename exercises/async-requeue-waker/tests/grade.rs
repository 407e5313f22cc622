#![cfg(feature = "grade")]
//! Grading of `async-requeue-waker`: a task that yields runs again, a task
//! woken twice by another is polled once more (not twice), and the echo
//! server on this executor passes the conformance cases whose clients
//! make it yield (a 1 MiB upload: more than 16 reads; 200 clients at once:
//! more than 64 accepts).
//!
//! Only built with `--features grade`, so a plain `cargo test --workspace`
//! does not grade the unsolved starter.

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::rc::Rc;
use std::sync::mpsc;
use std::task::{Poll, Waker};
use std::thread;
use std::time::Duration;

use echo_conformance::{ServerProcess, run_suite};
use ex_async_requeue_waker::Executor;
use ex_async_requeue_waker::runtime::{Reactor, yield_now};

const BIN: &str = env!("CARGO_BIN_EXE_ex-async-requeue-waker");
const CASES: &[&str] = &[
    "small",
    "large-1mib",
    "pipelined-1000",
    "half-close",
    "concurrent-200",
    "interleaved",
];

/// Runs `body` on its own thread and returns what it sends, or fails
/// after 10 s: an executor that lost a wake-up sleeps in `epoll_wait` for
/// ever instead of returning.
fn within_10s<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(body());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the executor never finished: a task was woken and never polled again")
}

fn executor() -> Rc<Executor> {
    Rc::new(Executor::new(Rc::new(Reactor::new().expect("epoll"))))
}

#[test]
fn a_task_that_yields_runs_again() {
    let log = within_10s(|| {
        let ex = executor();
        let log = Rc::new(RefCell::new(Vec::new()));
        for name in ["a", "b"] {
            let log = Rc::clone(&log);
            ex.spawn(async move {
                for i in 0..3 {
                    log.borrow_mut().push(format!("{name}{i}"));
                    yield_now().await;
                }
            });
        }
        ex.run().expect("run");
        log.take()
    });
    assert_eq!(log, ["a0", "b0", "a1", "b1", "a2", "b2"]);
}

#[test]
fn a_task_woken_twice_is_polled_once_more() {
    let polls = within_10s(|| {
        let ex = executor();
        let parked: Rc<RefCell<Option<Waker>>> = Rc::default();
        let flag = Rc::new(Cell::new(false));
        let polls = Rc::new(Cell::new(0));
        let (p, f, n) = (Rc::clone(&parked), Rc::clone(&flag), Rc::clone(&polls));
        ex.spawn(std::future::poll_fn(move |cx| {
            n.set(n.get() + 1);
            if f.get() {
                return Poll::Ready(());
            }
            *p.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        }));
        ex.spawn(async move {
            flag.set(true);
            let waker = parked.borrow_mut().take().expect("a parked waker");
            waker.wake_by_ref();
            waker.wake();
        });
        ex.run().expect("run");
        polls.get()
    });
    assert_eq!(polls, 2, "polled once parked, once woken");
}

#[test]
fn passes_the_cases() {
    let server = ServerProcess::spawn(Path::new(BIN), &[]).unwrap_or_else(|e| panic!("{e}"));
    let only: Vec<String> = CASES.iter().map(|c| c.to_string()).collect();
    let report = run_suite(&server.target(), &[], Some(&only), &mut |o| {
        eprintln!("{o}")
    });
    let _ = server.terminate();
    let report = report.unwrap_or_else(|e| panic!("the suite could not run: {e}"));
    assert!(report.ok(), "not every case passes:\n{report}");
    assert_eq!(report.outcomes.len(), CASES.len(), "{report}");
}
