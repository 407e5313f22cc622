//! TASK: four workers run one job at a time; let them work in parallel.
//!
//! `ThreadPool` starts `size` worker threads that take jobs from one
//! queue, a `std::sync::mpsc` channel. Its receiver cannot be shared by
//! several threads on its own (`mpsc` is multi-producer, single-consumer),
//! so it sits behind an `Arc<Mutex<_>>` and a worker locks it to take a
//! job. Every job runs, dropping the pool waits for them, and nothing
//! crashes; but a pool of four runs four slow jobs in four times the time
//! of one, and four jobs that need each other to proceed never meet.
//!
//! Make the workers run jobs at the same time. Edit this file only. Grade
//! with `just exercise pool-serial-workers` (or
//! `bash scripts/exercise.sh pool-serial-workers`).
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
    while let Ok(job) = queue.lock().expect("queue lock poisoned").recv() {
        job();
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
