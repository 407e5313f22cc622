//! `echo-bench check`: the conformance suite against a model or a running
//! server, one line per case as it finishes.
//!
//! The suite itself lives in `echo-conformance`; this file only chooses the
//! target, learns a model's expected limits from its own binary, and makes
//! sure the spawned server is stopped (and stops cleanly) afterwards.

use std::net::SocketAddr;

use echo_conformance::{ServerProcess, Target, run_suite};

use crate::run::existing_binary;

/// Spawns model `id` on a free port, runs the suite, stops it. `Ok(true)`
/// iff every case passed or hit an expected limit and the server exited 0
/// on SIGTERM.
pub fn model(id: &str, only: Option<&[String]>, model_args: &[String]) -> Result<bool, String> {
    let bin = existing_binary(id)?;
    let limits = echo_conformance::expected_limits(&bin)?;
    let args: Vec<&str> = model_args.iter().map(String::as_str).collect();
    let server = ServerProcess::spawn(&bin, &args)?;
    println!(
        "checking echo-{id} at {} (pid {}); expected limits: {}",
        server.addr(),
        server.pid(),
        if limits.is_empty() {
            "none".to_string()
        } else {
            limits.join(", ")
        }
    );
    let result = suite(&server.target(), &limits, only);
    let stopped = server.terminate();
    let ok = result?;
    match stopped {
        Ok(status) if status.success() => Ok(ok),
        Ok(status) => {
            println!("FAIL: the server exited with {status} after SIGTERM (expected 0)");
            Ok(false)
        }
        Err(e) => {
            println!("FAIL: the server {e}");
            Ok(false)
        }
    }
}

/// Runs the suite against a server someone else started.
pub fn external(
    addr: SocketAddr,
    pid: Option<u32>,
    limits: &[String],
    only: Option<&[String]>,
) -> Result<bool, String> {
    println!(
        "checking {addr}{}",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    );
    suite(&Target { addr, pid }, limits, only)
}

fn suite(target: &Target, limits: &[String], only: Option<&[String]>) -> Result<bool, String> {
    let report = run_suite(target, limits, only, &mut |o| println!("{o}"))?;
    // The outcome lines were printed live; the report's closing lines are
    // what follows them in its Display.
    let text = report.to_string();
    for line in text.lines().skip(report.outcomes.len()) {
        println!("{line}");
    }
    Ok(report.ok())
}
