//! Condition variable: two speakers take strict turns.
//!
//! Seed topic: two smart speakers reciting a poem line by line with
//! `threading.Condition` (003). Each speaker may only talk when it is its
//! turn; a condition variable lets it sleep until another thread changes the
//! shared state and says so.
//!
//! The seed's version calls bare `wait()`/`notify()` and warns that the
//! start order matters: a `notify` sent before the other side is waiting is
//! lost, and both sides then wait forever. The fix shown here is the rule
//! for every condition variable: keep the state in the mutex (a turn
//! number) and wait *for a predicate* on it (`wait_while_until`), so an early
//! notify does no harm and start order is irrelevant.
//!
//! APIs: `parking_lot::Mutex` + `Condvar` (`futex(2)` underneath);
//! `notify_all` because only the speaker whose turn it is may proceed.

use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// The two speakers.
pub const SPEAKERS: [&str; 2] = ["Aster", "Birch"];

/// The dialogue: (speaker index, line). Speakers alternate, Aster first.
pub const DIALOGUE: &[(usize, &str)] = &[
    (0, "Birch, are you awake?"),
    (1, "I am. What is it?"),
    (0, "Let us make a verse, one line each."),
    (1, "Fine. You begin."),
    (0, "The kettle hums before the light,"),
    (1, "the window pales and ends the night;"),
    (0, "one cup for you, and one for me,"),
    (1, "and not a word till half past three."),
];

/// Shared state behind the mutex: whose line is next, and what was said.
struct Stage {
    next: usize,
    said: Vec<(usize, &'static str)>,
}

/// Recites `dialogue` with one thread per speaker, strictly in order.
/// With `second_starts_first` the second speaker's thread is spawned first,
/// to show the start order does not matter. `report` is called under the
/// lock, so its calls come in dialogue order.
pub fn recite(
    dialogue: &'static [(usize, &'static str)],
    second_starts_first: bool,
    report: impl Fn(usize, &str) + Send + Sync + 'static,
) -> crate::Result<Vec<(usize, &'static str)>> {
    let stage = Arc::new((
        Mutex::new(Stage {
            next: 0,
            said: Vec::with_capacity(dialogue.len()),
        }),
        Condvar::new(),
    ));
    let report = Arc::new(report);
    let deadline = Instant::now() + Duration::from_secs(5);

    let order: [usize; 2] = if second_starts_first { [1, 0] } else { [0, 1] };
    let handles: Vec<_> = order
        .into_iter()
        .map(|me| {
            let (stage, report) = (stage.clone(), report.clone());
            thread::spawn(move || -> Result<(), String> {
                let (lock, turn_changed) = &*stage;
                for (i, &(who, line)) in dialogue.iter().enumerate() {
                    if who != me {
                        continue;
                    }
                    let mut st = lock.lock();
                    // The predicate makes a notify sent before we got here
                    // harmless: we look at the turn, not at the wake-up.
                    let waited =
                        turn_changed.wait_while_until(&mut st, |st| st.next != i, deadline);
                    if waited.timed_out() {
                        return Err(format!("{} waited too long for line {i}", SPEAKERS[me]));
                    }
                    report(me, line);
                    st.said.push((me, line));
                    st.next += 1;
                    turn_changed.notify_all();
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "a speaker panicked")??;
    }
    let said = std::mem::take(&mut stage.0.lock().said);
    Ok(said)
}

/// The seed's pitfall in miniature: a `notify_one` with nobody waiting is
/// not remembered. Returns true if a wait started afterwards timed out.
pub fn notify_before_wait_is_lost(wait: Duration) -> bool {
    let lock = Mutex::new(());
    let cv = Condvar::new();
    cv.notify_one();
    let mut guard = lock.lock();
    // parking_lot's Condvar never wakes spuriously, so a timeout here means
    // the earlier notify really was lost.
    cv.wait_for(&mut guard, wait).timed_out()
}

/// Runs the lesson.
pub fn run() -> crate::Result {
    println!("[main] Birch's thread starts first; the turn number keeps the order");
    let said = recite(DIALOGUE, true, |who, line| {
        println!("[{}] {line}", SPEAKERS[who]);
    })?;
    let alternating = said.windows(2).all(|w| w[0].0 != w[1].0);
    println!(
        "[main] {} lines, speakers alternate: {alternating}",
        said.len()
    );
    let lost = notify_before_wait_is_lost(Duration::from_millis(100));
    println!("[main] notify with nobody waiting, then wait 100 ms: timed out = {lost}");
    println!("[main] (that lost notify is why bare wait()/notify() depends on start order)");
    if said != DIALOGUE || !alternating {
        return Err("the dialogue came out of order".into());
    }
    Ok(())
}
