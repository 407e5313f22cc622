//! The deadlock lesson: detection by timeout, reentrant and ordered fixes.

use std::time::{Duration, Instant};

use lessons::deadlock::{
    AcquireError, Attempt, OrderedLock, acquire, nested, opposite_order, ordered, reentrant,
    relock_same_thread,
};

#[test]
fn opposite_order_is_detected_by_both_threads_in_bounded_time() {
    let started = Instant::now();
    let attempts = opposite_order(Duration::from_millis(100));
    assert!(started.elapsed() < Duration::from_secs(5));
    for a in attempts {
        match a {
            Attempt::DeadlockDetected { waited } => assert!(waited >= Duration::from_millis(100)),
            Attempt::GotBoth => panic!("a thread got both locks: {attempts:?}"),
        }
    }
}

#[test]
fn only_a_reentrant_lock_can_be_retaken_by_its_holder() {
    assert_eq!(relock_same_thread(), (false, true));
}

#[test]
fn one_reentrant_lock_lets_both_threads_finish() {
    assert_eq!(reentrant(500), [500, 500]);
}

#[test]
fn ordered_acquisition_lets_both_threads_finish() {
    assert_eq!(ordered(500), [500, 500]);
}

#[test]
fn nested_acquisition_against_the_order_is_refused() {
    let (in_order, reversed) = nested();
    assert_eq!(in_order, Ok(()));
    assert!(matches!(reversed, Err(AcquireError::OutOfOrder { held, wanted }) if held > wanted));
}

#[test]
fn locks_are_released_and_forgotten_when_the_guard_drops() {
    let x = OrderedLock::new("x");
    let y = OrderedLock::new("y");
    let t = Duration::from_millis(100);
    drop(acquire(&[&y], t).unwrap());
    // y is no longer recorded as held, so x may be taken now.
    let both = acquire(&[&y, &x], t).unwrap();
    // And it really is locked: a second holder times out.
    let other = std::thread::scope(|s| s.spawn(|| acquire(&[&x], t).err()).join().unwrap());
    assert_eq!(other, Some(AcquireError::TimedOut { lock: "x" }));
    drop(both);
    assert!(
        acquire(&[&x, &x], t).is_err(),
        "the same lock twice must be refused"
    );
}
