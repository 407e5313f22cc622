#![cfg(feature = "grade")]
//! Grading of `pool-serial-workers`: four jobs on a pool of four workers
//! must be running at the same moment; a hundred jobs must all run before
//! the pool's drop returns.
//!
//! The first test does not time anything: each job enters a room, waits
//! there (at most `MEET_WITHIN`) until all four are inside, and records
//! how many it saw. A pool that runs one job at a time lets each in alone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ex_pool_serial_workers::ThreadPool;

/// How long a job waits for the others to be running too.
const MEET_WITHIN: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Room {
    inside: Mutex<usize>,
    changed: Condvar,
    most: AtomicUsize,
}

impl Room {
    /// Enters, waits until `n` are inside or the deadline passes, leaves.
    fn meet(&self, n: usize) {
        let deadline = Instant::now() + MEET_WITHIN;
        let mut inside = self.inside.lock().unwrap();
        *inside += 1;
        self.most.fetch_max(*inside, Ordering::SeqCst);
        self.changed.notify_all();
        // Once the room has been full, nobody waits any more, whatever the
        // count is now (the first to wake may have left already).
        while self.most.load(Ordering::SeqCst) < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            inside = self.changed.wait_timeout(inside, left).unwrap().0;
            self.most.fetch_max(*inside, Ordering::SeqCst);
        }
        // Leaving: a job run after this one finds the room without it.
        *inside -= 1;
    }
}

#[test]
fn four_workers_run_four_jobs_at_once() {
    let room = Arc::new(Room::default());
    {
        let pool = ThreadPool::new(4);
        for _ in 0..4 {
            let room = Arc::clone(&room);
            pool.execute(move || room.meet(4));
        }
    } // drop waits for the four jobs
    let most = room.most.load(Ordering::SeqCst);
    assert_eq!(
        most, 4,
        "4 jobs on 4 workers, and at most {most} ran at the same time"
    );
}

#[test]
fn every_job_runs_before_drop_returns() {
    let done = Arc::new(AtomicUsize::new(0));
    {
        let pool = ThreadPool::new(3);
        for _ in 0..100 {
            let done = Arc::clone(&done);
            pool.execute(move || {
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
    }
    assert_eq!(done.load(Ordering::SeqCst), 100, "jobs lost at drop");
}
