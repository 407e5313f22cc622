//! Reference solution of `pool-serial-workers`: the lock on the receiver
//! is released as soon as a job is taken, before the job runs.
//!
//! In `while let Ok(job) = queue.lock().unwrap().recv() { job(); }` the
//! `MutexGuard` is a temporary of the loop's condition, and temporaries
//! of a `while let` condition live until the end of the loop body: the
//! worker holds the lock while it runs the job, and every other worker
//! waits for that lock, not for a job. (The Rust book's web-server
//! chapter points out this very loop.) With `let` the guard is a temporary
//! of one statement and is dropped at its `;`. The lesson's own pool uses
//! a crossbeam channel, whose receiver is multi-consumer and needs no
//! lock at all: the other way out.
//!
//! Syscalls: `clone(2)` for each worker; a worker waiting for a job or for
//! the lock sleeps in `futex(2)`.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of worker threads sharing one job queue.
pub struct ThreadPool {
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl ThreadPool {
    /// Starts `size` workers.
    pub fn new(size: usize) -> Self {
        assert!(size > 0, "a pool needs at least one worker");
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let workers = (0..size)
            .map(|_| {
                let queue = Arc::clone(&queue);
                thread::spawn(move || worker(&queue))
            })
            .collect();
        Self {
            jobs: Some(jobs),
            workers,
        }
    }

    /// Queues `job` for the next free worker.
    pub fn execute(&self, job: impl FnOnce() + Send + 'static) {
        self.jobs
            .as_ref()
            .expect("the queue is open until drop")
            .send(Box::new(job))
            .expect("the workers live as long as the pool");
    }
}

/// A worker's life: take a job, run it, until the queue is closed.
fn worker(queue: &Mutex<Receiver<Job>>) {
    loop {
        // The guard is a temporary of this statement: unlocked at the `;`,
        // before the job runs.
        let next = queue.lock().expect("queue lock poisoned").recv();
        match next {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

impl Drop for ThreadPool {
    /// Closes the queue and waits for every queued job to finish.
    fn drop(&mut self) {
        // Without senders, `recv` fails once the queue is empty: that ends
        // each worker's loop.
        drop(self.jobs.take());
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
