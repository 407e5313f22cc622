//! The semaphore lets everyone in, but never more than its slots at once.

use lessons::semaphore::{Semaphore, crowd};
use std::time::Duration;

#[test]
fn twenty_threads_never_more_than_five_inside() {
    let c = crowd(20, 5, Duration::from_millis(50), |_, _| {}).unwrap();
    assert_eq!(c.entered, 20, "every thread must get in eventually");
    assert!(c.max_inside <= 5, "{} inside at once", c.max_inside);
    assert!(c.max_inside >= 1);
}

#[test]
fn the_sixth_acquire_waits_until_a_permit_is_returned() {
    let sem = Semaphore::new(5);
    let held: Vec<_> = (0..5)
        .map(|_| sem.acquire_timeout(Duration::from_millis(10)).unwrap())
        .collect();
    assert_eq!(sem.available(), 0);
    assert!(
        sem.acquire_timeout(Duration::from_millis(30)).is_none(),
        "a sixth permit must not exist"
    );
    drop(held.into_iter().next());
    let sixth = sem.acquire_timeout(Duration::from_millis(10));
    assert!(sixth.is_some(), "a returned permit must be reusable");
}

#[test]
fn a_waiter_is_woken_by_a_release_from_another_thread() {
    let sem = std::sync::Arc::new(Semaphore::new(1));
    let first = sem.acquire_timeout(Duration::from_millis(10)).unwrap();
    let waiter = {
        let sem = sem.clone();
        std::thread::spawn(move || sem.acquire_timeout(Duration::from_secs(5)).is_some())
    };
    std::thread::sleep(Duration::from_millis(20));
    drop(first);
    assert!(waiter.join().unwrap(), "the release must wake the waiter");
    assert_eq!(sem.available(), 1);
}
