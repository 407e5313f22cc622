//! Event: one thread raises a flag, every waiting thread goes.
//!
//! Seed topic: the traffic light (001 §7.1, `threading.Event`). Cars arrive
//! at a red light and wait; the light thread turns green with `set()` and
//! every car drives off at once. Unlike a queue, an event carries no data
//! and is not consumed: once set it stays set until `clear()`, so a car that
//! arrives late does not wait at all.
//!
//! Built from a `parking_lot::Mutex<bool>` and a `Condvar` (`futex(2)`
//! wait/wake underneath); `set` uses `notify_all` because every waiter must
//! go, not one. The order of events is proved with a shared sequence counter
//! rather than clocks: "arrived", "green" and "passed" each take the next
//! number, so "passed after green" is a comparison of integers.

use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// A flag threads can wait on, like Python's `threading.Event`.
#[derive(Default)]
pub struct Event {
    flag: Mutex<bool>,
    changed: Condvar,
}

impl Event {
    /// A new, cleared event.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        *self.flag.lock() = true;
        self.changed.notify_all();
    }

    /// Clears the flag: later waiters block again.
    pub fn clear(&self) {
        *self.flag.lock() = false;
    }

    /// Whether the flag is set now.
    pub fn is_set(&self) -> bool {
        *self.flag.lock()
    }

    /// Waits until the flag is set, without a deadline. Prefer
    /// [`Event::wait_timeout`]: a waiter whose setter died waits forever.
    pub fn wait(&self) {
        let mut flag = self.flag.lock();
        while !*flag {
            self.changed.wait(&mut flag);
        }
    }

    /// Waits at most `timeout` for the flag; returns whether it is set
    /// (Python's `wait(timeout)` returns the same).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut flag = self.flag.lock();
        while !*flag {
            if self.changed.wait_until(&mut flag, deadline).timed_out() {
                break;
            }
        }
        *flag
    }
}

/// One car at the light.
#[derive(Debug, Clone)]
pub struct Car {
    /// Car number.
    pub id: usize,
    /// Sequence number taken on arrival at the red light.
    pub arrived: u64,
    /// Sequence number taken when it drove off.
    pub passed: u64,
    /// How long after the light turned green it drove off.
    pub after_green: Duration,
}

/// What happened at the crossing.
#[derive(Debug, Clone)]
pub struct Crossing {
    /// Sequence number taken just before the light turned green.
    pub green: u64,
    /// Every car, in car-number order.
    pub cars: Vec<Car>,
}

/// `cars` threads arrive at a red light; once all have arrived the light
/// stays red for `red` more, then turns green. `report` gets each line of
/// the story as it happens.
pub fn crossing(
    cars: usize,
    red: Duration,
    report: impl Fn(String) + Send + Sync + 'static,
) -> crate::Result<Crossing> {
    let light = Arc::new(Event::new());
    let seq = Arc::new(AtomicU64::new(0));
    let report = Arc::new(report);
    let (arrived_tx, arrived_rx) = crossbeam::channel::unbounded::<()>();
    let (green_at_tx, green_at_rx) = crossbeam::channel::bounded::<Instant>(cars);
    let patience = red + Duration::from_secs(5);

    let handles: Vec<_> = (0..cars)
        .map(|id| {
            let (light, seq, report, arrived_tx, green_at_rx) = (
                light.clone(),
                seq.clone(),
                report.clone(),
                arrived_tx.clone(),
                green_at_rx.clone(),
            );
            thread::spawn(move || -> Option<Car> {
                let arrived = seq.fetch_add(1, Ordering::SeqCst);
                report(format!("[car {id:>2}] waiting at red"));
                arrived_tx.send(()).ok()?;
                if !light.wait_timeout(patience) {
                    report(format!(
                        "[car {id:>2}] gave up: the light never turned green"
                    ));
                    return None;
                }
                let passed = seq.fetch_add(1, Ordering::SeqCst);
                let passed_at = Instant::now();
                let green_at = green_at_rx.recv_timeout(patience).ok()?;
                report(format!("[car {id:>2}] green: go"));
                Some(Car {
                    id,
                    arrived,
                    passed,
                    after_green: passed_at.saturating_duration_since(green_at),
                })
            })
        })
        .collect();
    drop(arrived_tx);

    // The light waits for every car to queue up, so the test can tell
    // "waited for green" from "came after green and never waited".
    for _ in 0..cars {
        arrived_rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| "a car never arrived")?;
    }
    report(format!("[light] red for {} ms", red.as_millis()));
    thread::sleep(red);
    // The number is taken before `set`, so every car released by `set`
    // draws a larger one.
    let green = seq.fetch_add(1, Ordering::SeqCst);
    let green_at = Instant::now();
    report("[light] green".to_string());
    light.set();
    for _ in 0..cars {
        green_at_tx
            .send(green_at)
            .map_err(|_| "no car is listening")?;
    }

    let mut out = Vec::with_capacity(cars);
    for h in handles {
        match h.join().map_err(|_| "a car thread panicked")? {
            Some(car) => out.push(car),
            None => return Err("a car did not pass".into()),
        }
    }
    Ok(Crossing { green, cars: out })
}

/// Runs the lesson.
pub fn run() -> crate::Result {
    let c = crossing(5, Duration::from_millis(300), |line| println!("{line}"))?;
    for car in &c.cars {
        println!(
            "[main] car {}: arrived #{}, green #{}, passed #{} ({} us after green)",
            car.id,
            car.arrived,
            c.green,
            car.passed,
            car.after_green.as_micros()
        );
    }
    let early = c.cars.iter().filter(|car| car.passed < c.green).count();
    println!("[main] cars that passed before green: {early}");

    let e = Event::new();
    e.set();
    e.clear();
    let late = e.wait_timeout(Duration::from_millis(50));
    println!("[main] after set() then clear(), wait_timeout(50 ms) returns {late}");
    if early > 0 || late {
        return Err("the event let a car through on red".into());
    }
    Ok(())
}
