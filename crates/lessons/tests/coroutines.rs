//! The generator protocol, completed ping-pongs, equal sums, and starvation.

use lessons::coroutines::{
    Consumer, ResumeError, Trace, Yielded, bakery, starvation, stepped, straight, task_ping_pong,
    thread_ping_pong,
};
use std::time::Duration;

#[test]
fn a_consumer_behaves_like_a_python_generator() {
    let mut c = Consumer::new("c");
    assert_eq!(c.resume(Some(1)), Err(ResumeError::NotStarted));
    assert_eq!(c.resume(None), Ok(Yielded::Ready));
    assert_eq!(c.resume(Some(7)), Ok(Yielded::Ate { bun: 7, eaten: 1 }));
    assert_eq!(c.resume(Some(8)), Ok(Yielded::Ate { bun: 8, eaten: 2 }));
    assert_eq!(c.resume(None), Ok(Yielded::Done { eaten: 2 }));
    assert_eq!(c.resume(None), Err(ResumeError::Exhausted));
}

#[test]
fn the_bakery_interleaves_producer_and_consumers() {
    use Trace::*;
    let trace = bakery(2).unwrap();
    assert_eq!(
        trace,
        [
            Baked(1),
            Ate("c1", 1),
            Ate("c2", 1),
            Baked(2),
            Ate("c1", 2),
            Ate("c2", 2),
            Stopped("c1", 2),
            Stopped("c2", 2),
        ]
    );
}

#[test]
fn both_ping_pongs_complete_every_round_trip() {
    assert_eq!(task_ping_pong(2_000).unwrap().round_trips, 2_000);
    assert_eq!(thread_ping_pong(500, true).unwrap().round_trips, 500);
    assert_eq!(thread_ping_pong(500, false).unwrap().round_trips, 500);
}

#[test]
fn straight_and_stepped_compute_the_same_sum() {
    let n = 100_000u64;
    let expected = 2 * (n * (n + 1) / 2);
    assert_eq!(straight(n), expected);
    assert_eq!(stepped(n), expected);
}

#[test]
fn a_task_that_never_awaits_starves_the_ticker() {
    let s = starvation(Duration::from_millis(200)).unwrap();
    assert_eq!(s.no_yield, 0, "nothing else can run on the one thread");
    assert!(s.with_yield > 0, "yield_now lets the ticker run");
    assert!(
        s.spawn_blocking > 0,
        "spawn_blocking frees the runtime thread"
    );
}
