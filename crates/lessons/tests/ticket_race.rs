//! The ticket-race lesson: oversold without a lock, exact with one.

use std::time::Duration;

use lessons::ticket_race::{
    sell_with_processes, threads_fetch_sub, threads_load_store, threads_mutex,
};

// A wider pause than the lesson's 20 ms: on a busy machine all eight buyers
// must still read before the first one writes.
const PAUSE: Duration = Duration::from_millis(50);

#[test]
fn processes_without_a_lock_oversell() {
    let s = sell_with_processes(3, 8, PAUSE, false).unwrap();
    assert!(s.sold > 3, "sold {} of 3 without a lock", s.sold);
    assert!(s.left >= 0 && s.left < 3, "left {}", s.left);
}

#[test]
fn processes_with_flock_sell_exactly_the_tickets() {
    let s = sell_with_processes(3, 8, PAUSE, true).unwrap();
    assert_eq!(s.sold, 3);
    assert_eq!(s.left, 0);
}

#[test]
fn separate_load_and_store_lose_updates() {
    let c = threads_load_store(20, Duration::from_millis(20));
    assert!(c.result > c.expected, "{c:?}");
}

#[test]
fn a_mutex_around_read_modify_write_loses_nothing() {
    let c = threads_mutex(20, Duration::from_millis(5));
    assert_eq!(c.result, c.expected);
}

#[test]
fn fetch_sub_loses_nothing() {
    let c = threads_fetch_sub(50);
    assert_eq!(c.result, c.expected);
}
