//! Thread pool order and callbacks, process pool results and pids, rayon.

use lessons::pools::{ProcessPool, ThreadPool, sum_squares};
use rayon::prelude::*;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn map_keeps_input_order_even_when_jobs_finish_out_of_order() {
    let pool = ThreadPool::new(4).unwrap();
    // Earlier items sleep longer, so they finish last.
    let out = pool
        .map(
            |n: u64| {
                thread::sleep(Duration::from_millis(2 * (10 - n)));
                n * 10
            },
            0..10u64,
            WAIT,
        )
        .unwrap();
    assert_eq!(out, (0..10u64).map(|n| n * 10).collect::<Vec<_>>());
}

#[test]
fn submit_returns_the_job_result_from_a_worker_thread() {
    let pool = ThreadPool::new(2).unwrap();
    let h = pool.submit(|| thread::current().name().map(str::to_string));
    let name = h.wait(WAIT).unwrap().unwrap();
    assert!(name.starts_with("pool-worker-"), "ran on {name}");
}

#[test]
fn every_callback_runs_exactly_once_on_a_worker() {
    let pool = ThreadPool::new(3).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = crossbeam::channel::unbounded();
    for n in 0..20u64 {
        let (seen, tx) = (seen.clone(), tx.clone());
        pool.submit_with_callback(
            move || n * n,
            move |sq| {
                let on_worker = thread::current()
                    .name()
                    .is_some_and(|t| t.starts_with("pool-worker-"));
                seen.lock().unwrap().push((n, sq, on_worker));
                tx.send(()).unwrap();
            },
        );
    }
    for _ in 0..20 {
        rx.recv_timeout(WAIT).expect("a callback never ran");
    }
    drop(pool); // joins the workers: no callback can still be pending
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_unstable();
    let expected: Vec<_> = (0..20u64).map(|n| (n, n * n, true)).collect();
    assert_eq!(
        seen, expected,
        "each callback once, with its own result, on a worker"
    );
}

#[test]
fn process_pool_results_are_right_and_come_from_other_processes() {
    let mut pool = ProcessPool::new(3).unwrap();
    let jobs: Vec<(u64, u64)> = (0..7).map(|i| (i * 500, i * 500 + 700)).collect();
    let answers = pool.map(&jobs).unwrap();
    let expected: Vec<u64> = jobs.iter().map(|&(s, e)| sum_squares(s, e)).collect();
    let got: Vec<u64> = answers.iter().map(|a| a.value).collect();
    assert_eq!(got, expected);

    let me = std::process::id() as i32;
    let pids: HashSet<i32> = answers.iter().map(|a| a.pid).collect();
    assert!(!pids.contains(&me), "a job ran in the parent");
    assert_eq!(pids.len(), 3, "7 jobs round-robin over 3 workers use all 3");
    assert_eq!(pids, pool.pids().into_iter().collect::<HashSet<_>>());

    // The same workers serve a second batch: a pool, not a process per job.
    let again = pool.map(&[(1, 4)]).unwrap();
    assert_eq!(again[0].value, 1 + 4 + 9);
    assert!(pool.pids().contains(&again[0].pid));
}

#[test]
fn rayon_par_iter_matches_the_sequential_answer() {
    let par: Vec<u64> = (0..1000u64).into_par_iter().map(|n| n * n).collect();
    let seq: Vec<u64> = (0..1000u64).map(|n| n * n).collect();
    assert_eq!(par, seq);
    assert_eq!(par.iter().sum::<u64>(), sum_squares(0, 1000));
}
