//! Proof that the helpers of `echo_conformance::limits` that the model
//! tests call can fail: each is run against a broken server with the bug
//! it exists to find. (The suite's cases and faults have their own proofs
//! in `cases_catch.rs` and `faults_catch.rs`.)

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use echo_conformance::ServerProcess;
use echo_conformance::limits::assert_streams_back;

/// An edge-triggered loop that reads once per edge leaves the end of a
/// 1 MiB stream unread for good: the echo stops short and the client's
/// read times out.
#[test]
fn streams_back_catches_a_loop_that_reads_once_per_edge() {
    let bin = Path::new(env!("CARGO_BIN_EXE_broken-et-read-once"));
    let server = ServerProcess::spawn(bin, &[]).expect("spawn broken-et-read-once");
    let caught = catch_unwind(AssertUnwindSafe(|| {
        assert_streams_back(&server, 1024 * 1024, 1024 * 1024, false)
    }));
    let why = caught.expect_err("broken-et-read-once echoed a whole 1 MiB stream");
    let why = why
        .downcast_ref::<String>()
        .map(String::as_str)
        .unwrap_or("");
    assert!(
        why.contains("bytes back"),
        "failed for another reason: {why}"
    );
}
