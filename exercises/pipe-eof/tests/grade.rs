#![cfg(feature = "grade")]
//! Grading of `pipe-eof`: a child must count, and answer for, a few lines,
//! nothing at all, and 1 MiB (more than a pipe holds, so the parent writes
//! while the child reads), each within `ANSWER_WITHIN`.
//!
//! Each transfer runs on a thread of its own, so that one that waits for
//! ever fails the test instead of hanging it; its child is killed when that
//! thread dies with the test process (`PR_SET_PDEATHSIG`, set up by the
//! crate). The transfers run one at a time: a child forked while another
//! transfer's pipes are open would inherit their write ends and hold that
//! transfer's EOF back (see `src/solution.rs`).

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use ex_pipe_eof::{Counts, count_in_child};

/// Generous for a fork, 1 MiB through a pipe and a wait, on a busy machine.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

fn count_bounded(data: Vec<u8>, what: &str) -> Counts {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(count_in_child(&data));
    });
    match rx.recv_timeout(ANSWER_WITHIN) {
        Ok(Ok(counts)) => counts,
        Ok(Err(e)) => panic!("{what}: count_in_child failed: {e}"),
        Err(_) => panic!(
            "{what}: no answer from the child within {ANSWER_WITHIN:?}: \
             its read never saw EOF on the input pipe"
        ),
    }
}

#[test]
fn the_child_sees_eof_and_answers() {
    let few = b"one\ntwo\nthree\n".to_vec();
    assert_eq!(
        count_bounded(few, "3 lines"),
        Counts {
            bytes: 14,
            lines: 3
        },
        "3 lines of 14 bytes"
    );

    assert_eq!(
        count_bounded(Vec::new(), "no input"),
        Counts { bytes: 0, lines: 0 },
        "no input at all"
    );

    // 16,384 lines of 64 bytes: 1 MiB, sixteen times a pipe's default
    // capacity, so the parent blocks in write until the child reads.
    let line: Vec<u8> = [b'x'; 63].iter().copied().chain([b'\n']).collect();
    let big: Vec<u8> = line.repeat(16_384);
    assert_eq!(
        count_bounded(big, "1 MiB"),
        Counts {
            bytes: 1 << 20,
            lines: 16_384
        },
        "1 MiB in 16,384 lines"
    );
}
