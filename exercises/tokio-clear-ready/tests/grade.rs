#![cfg(feature = "grade")]
//! Grading of `tokio-clear-ready`: a client that sends megabytes before it
//! reads is stopped at the output cap and must then get every byte back,
//! which needs the task to remember that its socket still holds bytes;
//! then the whole conformance suite, which also catches the opposite
//! mistake (never clearing, so `ready()` answers at once and every task
//! spins): `beyond-fd-setsize` sees the CPU, the crowd cases late echoes.
//!
//! Only built with `--features grade`, so a plain `cargo test --workspace`
//! does not grade the unsolved starter.

use std::path::Path;

use echo_conformance::{ServerProcess, run_suite};
use echo_protocol::nonblocking::OUTPUT_CAP;

const BIN: &str = env!("CARGO_BIN_EXE_ex-tokio-clear-ready");

#[test]
fn resumes_a_client_stopped_at_the_cap() {
    echo_conformance::limits::assert_back_pressure(Path::new(BIN), &[], OUTPUT_CAP);
}

#[test]
fn passes_the_cases() {
    let server = ServerProcess::spawn(Path::new(BIN), &[]).unwrap_or_else(|e| panic!("{e}"));
    let report = run_suite(&server.target(), &[], None, &mut |o| eprintln!("{o}"));
    let _ = server.terminate();
    let report = report.unwrap_or_else(|e| panic!("the suite could not run: {e}"));
    assert!(report.ok(), "not every case passes:\n{report}");
}
