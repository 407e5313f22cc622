//! Proof that the suite can fail: every broken server in `src/bin/` is run
//! against the case named for its bug, which must fail; the slow but
//! correct control must pass every case.
//!
//! Each server is a real process spawned on `127.0.0.1:0` with its pid
//! known, so the checks that read `/proc` (memory, leaks, zombies, CPU) and
//! the liveness check after every case are exercised too. If a case is
//! weakened later so that its broken server passes, this turns red.
//!
//! The servers run one after the other: several at once would make the
//! memory and CPU readings of one server depend on the others' load.

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use echo_conformance::{CASES, Outcome, ServerProcess, Verdict, run_suite};

/// (binary, path, the case that must catch it)
const CATCHES: &[(&str, &str, &str)] = &[
    (
        "broken-read-exact",
        env!("CARGO_BIN_EXE_broken-read-exact"),
        "small",
    ),
    (
        "broken-utf8-lines",
        env!("CARGO_BIN_EXE_broken-utf8-lines"),
        "all-bytes",
    ),
    (
        "broken-one-read",
        env!("CARGO_BIN_EXE_broken-one-read"),
        "large-1mib",
    ),
    (
        "broken-et-read-once",
        env!("CARGO_BIN_EXE_broken-et-read-once"),
        "pipelined-1000",
    ),
    (
        "broken-close-on-eof",
        env!("CARGO_BIN_EXE_broken-close-on-eof"),
        "half-close",
    ),
    (
        "broken-slot-leak",
        env!("CARGO_BIN_EXE_broken-slot-leak"),
        "sequential-1000",
    ),
    (
        "broken-join-not-spawn",
        env!("CARGO_BIN_EXE_broken-join-not-spawn"),
        "concurrent-200",
    ),
    (
        "broken-shared-buffer",
        env!("CARGO_BIN_EXE_broken-shared-buffer"),
        "interleaved",
    ),
    (
        "broken-error-propagation",
        env!("CARGO_BIN_EXE_broken-error-propagation"),
        "reset-isolation",
    ),
    (
        "broken-sigpipe",
        env!("CARGO_BIN_EXE_broken-sigpipe"),
        "reset-pending",
    ),
    (
        "broken-peer-addr-unwrap",
        env!("CARGO_BIN_EXE_broken-peer-addr-unwrap"),
        "reset-before-accept",
    ),
    (
        "broken-fd-leak",
        env!("CARGO_BIN_EXE_broken-fd-leak"),
        "churn",
    ),
    (
        "broken-zombies",
        env!("CARGO_BIN_EXE_broken-zombies"),
        "churn",
    ),
    (
        "broken-unbounded-buffer",
        env!("CARGO_BIN_EXE_broken-unbounded-buffer"),
        "slow-reader",
    ),
    (
        "broken-idle-timeout",
        env!("CARGO_BIN_EXE_broken-idle-timeout"),
        "idle-500",
    ),
    (
        "broken-select-fd-setsize",
        env!("CARGO_BIN_EXE_broken-select-fd-setsize"),
        "beyond-fd-setsize",
    ),
];

/// Held while a server runs, so the two tests take turns (see above).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `cases` (all when `None`) against a fresh `bin`, pid known.
fn run(bin: &str, cases: Option<&[String]>) -> Vec<Outcome> {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let server = ServerProcess::spawn(Path::new(bin), &[]).unwrap_or_else(|e| panic!("{e}"));
    let report = run_suite(&server.target(), &[], cases, &mut |o| eprintln!("  {o}"))
        .unwrap_or_else(|e| panic!("{bin}: the suite could not run: {e}"));
    // Dropping kills it: several of these cannot shut down cleanly, and
    // some are dead already.
    drop(server);
    report.outcomes
}

#[test]
fn every_case_has_a_broken_server_it_catches() {
    for case in CASES {
        assert!(
            CATCHES.iter().any(|&(_, _, c)| c == *case),
            "no broken server is caught by {case}: add one to src/bin/"
        );
    }
    let started = Instant::now();
    let mut escaped = Vec::new();
    for &(name, bin, case) in CATCHES {
        eprintln!("{name} against {case}:");
        let outcomes = run(bin, Some(&[case.to_string()]));
        let outcome = &outcomes[0];
        assert_eq!(outcome.case, case);
        if outcome.verdict != Verdict::Fail {
            escaped.push(format!("{name} passed {case}: {outcome}"));
        }
    }
    eprintln!(
        "catch matrix done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        escaped.is_empty(),
        "cases that no longer catch their bug:\n{}",
        escaped.join("\n")
    );
}

#[test]
fn the_slow_control_passes_every_case() {
    let bin = env!("CARGO_BIN_EXE_control-slow");
    eprintln!("control-slow against every case:");
    let outcomes = run(bin, None);
    let cases: Vec<&str> = outcomes.iter().map(|o| o.case).collect();
    assert_eq!(cases, CASES);
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| o.verdict != Verdict::Pass)
        .map(|o| o.to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "the correct control failed:\n{}",
        failed.join("\n")
    );
}
