//! Cars pass only after the light turns green, and all of them pass.

use lessons::event::{Event, crossing};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn no_car_passes_before_green_and_all_pass_after() {
    let c = crossing(8, Duration::from_millis(50), |_| {}).unwrap();
    assert_eq!(c.cars.len(), 8);
    for car in &c.cars {
        assert!(car.arrived < c.green, "car {} arrived after green", car.id);
        assert!(car.passed > c.green, "car {} passed on red", car.id);
    }
    // Every sequence number is used exactly once: 8 arrivals, 1 green, 8 passes.
    let mut all: Vec<u64> = c.cars.iter().flat_map(|c| [c.arrived, c.passed]).collect();
    all.push(c.green);
    all.sort_unstable();
    assert_eq!(all, (0..17).collect::<Vec<u64>>());
}

#[test]
fn wait_timeout_reports_the_flag() {
    let e = Event::new();
    assert!(
        !e.wait_timeout(Duration::from_millis(20)),
        "cleared: must time out"
    );
    e.set();
    assert!(e.is_set());
    assert!(e.wait_timeout(Duration::ZERO), "set: must not wait");
    e.clear();
    assert!(
        !e.wait_timeout(Duration::from_millis(20)),
        "cleared again: must time out"
    );
}

#[test]
fn set_wakes_every_waiter() {
    let e = Arc::new(Event::new());
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let e = e.clone();
            std::thread::spawn(move || e.wait_timeout(Duration::from_secs(5)))
        })
        .collect();
    e.set();
    for w in waiters {
        assert!(w.join().unwrap(), "a waiter missed the set");
    }
}
