//! Thread-local storage: one name, a separate value in every thread.
//!
//! Seed topic: `threading.local()`. Two threads store their own `name` and
//! `age` in one global `loc`, sleep, and a helper that takes no argument
//! prints each thread's own values; the seeds describe it as one big
//! dictionary keyed by thread id.
//!
//! Syscalls and APIs: `thread_local!` (compiled to the ELF TLS segment: each
//! thread's block sits at a fixed offset from the thread pointer, so there is
//! no dictionary and no lock), `std::thread::scope` and `crossbeam::scope`
//! (scoped threads that may borrow from the caller's stack).
//!
//! Trade-offs: a thread-local is invisible plumbing: convenient for a
//! per-thread cache, counter or "current request", but the value dies with
//! its thread, is fresh (the initial value) in every new thread, and cannot
//! be seen by the others. In a thread pool it outlives the task that set it.

use std::cell::{Cell, RefCell};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use crate::ticket_race::Rendezvous;

thread_local! {
    static NAME: RefCell<String> = const { RefCell::new(String::new()) };
    static CALLS: Cell<u32> = const { Cell::new(0) };
}

/// Reads this thread's name: like the seeds' `func1`, it takes no argument.
pub fn current_name() -> String {
    NAME.with(|n| n.borrow().clone())
}

/// Counts one call in this thread and returns the count so far.
pub fn count_call() -> u32 {
    CALLS.with(|c| {
        c.set(c.get() + 1);
        c.get()
    })
}

/// What one thread read back after every thread had written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readback {
    /// The name this thread wrote.
    pub wrote: String,
    /// The thread-local name it read back.
    pub local_name: String,
    /// Its thread-local call count (it made `index + 1` calls).
    pub local_calls: u32,
    /// The shared name it read back.
    pub shared_name: String,
}

/// `threads` threads each write their own name to a thread-local and to a
/// shared `Mutex<String>`, wait until all have written, then read both.
pub fn observe(threads: usize) -> Vec<Readback> {
    let shared = Mutex::new(String::new());
    let written = Rendezvous::new(threads);
    thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (shared, written) = (&shared, &written);
                s.spawn(move || {
                    let wrote = format!("worker-{i}");
                    NAME.with(|n| *n.borrow_mut() = wrote.clone());
                    *shared.lock().unwrap_or_else(|e| e.into_inner()) = wrote.clone();
                    let mut local_calls = 0;
                    for _ in 0..=i {
                        local_calls = count_call();
                    }
                    // Everybody has written both before anybody reads.
                    written.wait(Duration::from_secs(5));
                    Readback {
                        wrote,
                        local_name: current_name(),
                        local_calls,
                        shared_name: shared.lock().unwrap_or_else(|e| e.into_inner()).clone(),
                    }
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    })
}

/// The main thread counts `main_calls` calls, then `threads` crossbeam
/// scoped threads make one call each. Returns (main's count, each thread's
/// count): every new thread starts from the initial value, 0.
pub fn fresh_per_thread(main_calls: u32, threads: usize) -> (u32, Vec<u32>) {
    let mut main_count = 0;
    for _ in 0..main_calls {
        main_count = count_call();
    }
    let counts = crossbeam::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(|_| count_call())).collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    })
    .unwrap_or_default();
    (main_count, counts)
}

/// Runs the lesson.
pub fn run() -> crate::Result {
    println!("4 threads each set a thread-local NAME and a shared name, then read both back");
    for r in observe(4) {
        println!(
            "[{}] thread-local name = {:<8} calls = {}   shared name = {}",
            r.wrote, r.local_name, r.local_calls, r.shared_name
        );
    }
    let (main_count, counts) = fresh_per_thread(99, 3);
    println!(
        "[main] my CALLS = {main_count}; 3 new scoped threads each saw CALLS = {:?} after one call",
        counts
    );
    Ok(())
}
