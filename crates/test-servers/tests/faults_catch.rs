//! Every fault can fail: each broken server is run through the one fault
//! its bug is for, and that fault must fail, for that bug's reason (the
//! detail is checked, so a server that merely failed to start does not
//! count as caught). The correct servers that pass the same faults are the
//! models, checked by `echo-bench check <model> --suite faults` in CI.

use std::path::PathBuf;

use echo_conformance::{FaultTarget, Outcome, Verdict, run_faults};

/// Runs `fault` alone against `bin` (spawned fresh, as for a model) and
/// returns its outcome.
fn run_one(bin: &str, fault: &str) -> Outcome {
    let target = FaultTarget::Binary {
        bin: PathBuf::from(bin),
        args: Vec::new(),
    };
    let only = [fault.to_string()];
    let report = run_faults(&target, &[], Some(&only), &mut |o| eprintln!("{o}"))
        .unwrap_or_else(|e| panic!("{bin}: the fault suite could not run: {e}"));
    assert_eq!(report.outcomes.len(), 1, "{report}");
    report.outcomes.into_iter().next().unwrap()
}

/// The fault failed, and its detail names what the bug does.
fn assert_caught(outcome: &Outcome, because: &[&str]) {
    assert_eq!(
        outcome.verdict,
        Verdict::Fail,
        "{}: the broken server passed: {outcome}",
        outcome.case
    );
    assert!(
        because.iter().any(|b| outcome.detail.contains(b)),
        "{}: failed, but not for the bug's reason (wanted one of {because:?}): {outcome}",
        outcome.case
    );
}

#[test]
fn exit_on_sigterm_is_caught_cutting_the_transfer() {
    let o = run_one(
        env!("CARGO_BIN_EXE_broken-exit-on-sigterm"),
        "sigterm-mid-transfer",
    );
    assert_caught(&o, &["closed the connection after", "read failed after"]);
    assert!(o.detail.contains("after SIGTERM"), "{o}");
}

#[test]
fn emfile_spin_is_caught_burning_cpu() {
    let o = run_one(env!("CARGO_BIN_EXE_broken-emfile-spin"), "descriptor-storm");
    assert_caught(&o, &["a busy loop"]);
}

#[test]
fn ignored_max_conns_is_caught_serving_one_too_many() {
    let o = run_one(env!("CARGO_BIN_EXE_broken-ignores-max-conns"), "max-conns");
    assert_caught(&o, &["for client 4, the connection was served"]);
}

#[test]
fn untrimmed_output_is_caught_by_the_soak() {
    let o = run_one(env!("CARGO_BIN_EXE_broken-output-never-trimmed"), "soak");
    assert_caught(&o, &["server memory (PSS) grew by"]);
}
