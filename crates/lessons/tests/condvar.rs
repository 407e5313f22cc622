//! The dialogue comes out exactly in order, speakers alternating.

use lessons::condvar::{DIALOGUE, notify_before_wait_is_lost, recite};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn the_recorded_lines_are_the_dialogue_in_order() {
    for second_first in [false, true] {
        let said = recite(DIALOGUE, second_first, |_, _| {}).unwrap();
        assert_eq!(said, DIALOGUE, "second_starts_first = {second_first}");
        assert!(
            said.windows(2).all(|w| w[0].0 != w[1].0),
            "speakers must alternate"
        );
        assert_eq!(said[0].0, 0, "Aster speaks first");
    }
}

#[test]
fn the_reporter_sees_the_same_order_as_it_happens() {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = heard.clone();
    recite(DIALOGUE, true, move |who, line| {
        h.lock().unwrap().push((who, line.to_string()))
    })
    .unwrap();
    let heard = heard.lock().unwrap();
    let expected: Vec<(usize, String)> =
        DIALOGUE.iter().map(|&(w, l)| (w, l.to_string())).collect();
    assert_eq!(*heard, expected);
}

#[test]
fn a_notify_before_the_wait_is_lost() {
    assert!(notify_before_wait_is_lost(Duration::from_millis(30)));
}
