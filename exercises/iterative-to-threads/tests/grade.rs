#![cfg(feature = "grade")]
//! Grading of `iterative-to-threads`: the whole conformance suite, with no
//! expected limits (the binary's `MODEL` declares none).
//!
//! Only built with `--features grade`, so a plain `cargo test --workspace`
//! does not grade the unsolved starter.

use std::path::Path;

#[test]
fn conforms_with_no_expected_limits() {
    echo_conformance::assert_conforms(
        Path::new(env!("CARGO_BIN_EXE_ex-iterative-to-threads")),
        &[],
    );
}
