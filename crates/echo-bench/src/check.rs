//! `echo-bench check`: the conformance cases, then the fault suite, against
//! a model or a running server, one line per outcome as it finishes and one
//! closing `N passed, N failed` over both.
//!
//! The suites themselves live in `echo-conformance`; this file only chooses
//! the target and what to run, learns a model's expected limits from its own
//! binary, and makes sure a spawned server is stopped (and stops cleanly)
//! afterwards. Against a model, the cases share one server and each fault
//! spawns its own (with a low open-files limit, or `--max-conns`).

use std::net::SocketAddr;

use echo_conformance::{
    CASES, FAULTS, FaultTarget, Report, ServerProcess, Target, run_faults, run_suite,
};

use crate::run::existing_binary;

/// Which suites `check` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Suite {
    /// The conformance cases only
    Cases,
    /// The fault suite only
    Faults,
    /// Cases, then faults
    All,
}

/// What to run of each suite: `None` skips it, `Some(None)` runs all of
/// it, `Some(Some(names))` the named ones.
struct Plan {
    cases: Option<Option<Vec<String>>>,
    faults: Option<Option<Vec<String>>>,
}

/// Splits `--case` names into cases and faults, under `--suite`.
fn plan(suite: Suite, names: &[String]) -> Result<Plan, String> {
    let want_cases = suite != Suite::Faults;
    let want_faults = suite != Suite::Cases;
    if names.is_empty() {
        return Ok(Plan {
            cases: want_cases.then_some(None),
            faults: want_faults.then_some(None),
        });
    }
    let (mut cases, mut faults) = (Vec::new(), Vec::new());
    for name in names {
        if CASES.contains(&name.as_str()) {
            if !want_cases {
                return Err(format!(
                    "'{name}' is a case, and --suite faults runs faults only"
                ));
            }
            cases.push(name.clone());
        } else if FAULTS.contains(&name.as_str()) {
            if !want_faults {
                return Err(format!(
                    "'{name}' is a fault, and --suite cases runs cases only"
                ));
            }
            faults.push(name.clone());
        } else {
            return Err(format!(
                "unknown case or fault '{name}'; the cases are: {}; the faults: {}",
                CASES.join(", "),
                FAULTS.join(", ")
            ));
        }
    }
    Ok(Plan {
        cases: (!cases.is_empty()).then_some(Some(cases)),
        faults: (!faults.is_empty()).then_some(Some(faults)),
    })
}

/// Checks the names given on the command line before anything runs, so that
/// a typo is a usage error (one line, exit 2), not a failed check.
pub fn validate(suite: Suite, names: &[String], limits: &[String]) -> Result<(), String> {
    plan(suite, names)?;
    for name in limits {
        if !CASES.contains(&name.as_str()) && !FAULTS.contains(&name.as_str()) {
            return Err(format!(
                "unknown case or fault '{name}' in --expect-limit; the cases are: {}; the \
                 faults: {}",
                CASES.join(", "),
                FAULTS.join(", ")
            ));
        }
    }
    Ok(())
}

/// Model `id`: the cases against one server on a free port (stopped
/// afterwards, which must exit 0), then each fault on a fresh one.
/// `Ok(true)` iff nothing failed.
pub fn model(
    id: &str,
    suite: Suite,
    names: &[String],
    model_args: &[String],
) -> Result<bool, String> {
    let plan = plan(suite, names)?;
    let bin = existing_binary(id)?;
    let limits = echo_conformance::expected_limits(&bin)?;
    let args: Vec<&str> = model_args.iter().map(String::as_str).collect();
    println!(
        "checking echo-{id}; expected limits: {}",
        if limits.is_empty() {
            "none".to_string()
        } else {
            limits.join(", ")
        }
    );
    let mut all = Report::default();
    let mut stopped_ok = true;
    if let Some(only) = &plan.cases {
        let server = ServerProcess::spawn(&bin, &args)?;
        println!(
            "cases, on one server at {} (pid {}):",
            server.addr(),
            server.pid()
        );
        let result = run_suite(&server.target(), &limits, only.as_deref(), &mut |o| {
            println!("{o}")
        });
        let stopped = server.terminate();
        all.outcomes.extend(result?.outcomes);
        match stopped {
            Ok(status) if status.success() => {}
            Ok(status) => {
                println!("FAIL: the server exited with {status} after SIGTERM (expected 0)");
                stopped_ok = false;
            }
            Err(e) => {
                println!("FAIL: the server {e}");
                stopped_ok = false;
            }
        }
    }
    if let Some(only) = &plan.faults {
        println!("faults, each on a fresh server:");
        let target = FaultTarget::Binary {
            bin,
            args: model_args.to_vec(),
        };
        let report = run_faults(&target, &limits, only.as_deref(), &mut |o| println!("{o}"))?;
        all.outcomes.extend(report.outcomes);
    }
    closing(&all);
    Ok(all.ok() && stopped_ok)
}

/// A server someone else started. The faults it lacks the means for (no
/// pid, no `max_conns`) are reported as not run; SIGTERM, last, ends it.
pub fn external(
    addr: SocketAddr,
    pid: Option<u32>,
    max_conns: Option<usize>,
    limits: &[String],
    suite: Suite,
    names: &[String],
) -> Result<bool, String> {
    let plan = plan(suite, names)?;
    // The pid is trusted with SIGTERM and with verdicts on memory and
    // leaks: it must be the server at this address, not a typo.
    if let Some(pid) = pid {
        match echo_conformance::tree::listens_on(pid, addr) {
            Some(true) => {}
            Some(false) => {
                return Err(format!(
                    "pid {pid} holds no socket listening on {addr}: give the pid of the \
                     process that listens there"
                ));
            }
            None => return Err(format!("cannot inspect pid {pid} (gone, or not ours)")),
        }
    }
    println!(
        "checking {addr}{}",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    );
    let mut all = Report::default();
    if let Some(only) = &plan.cases {
        println!("cases:");
        let report = run_suite(&Target { addr, pid }, limits, only.as_deref(), &mut |o| {
            println!("{o}")
        })?;
        all.outcomes.extend(report.outcomes);
    }
    if let Some(only) = &plan.faults {
        println!("faults:");
        let target = FaultTarget::External {
            addr,
            pid,
            max_conns,
        };
        let report = run_faults(&target, limits, only.as_deref(), &mut |o| println!("{o}"))?;
        all.outcomes.extend(report.outcomes);
    }
    closing(&all);
    Ok(all.ok())
}

/// The outcome lines were printed live; the report's closing lines are what
/// follows them in its Display.
fn closing(report: &Report) {
    let text = report.to_string();
    for line in text.lines().skip(report.outcomes.len()) {
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn case_names_go_to_their_suite() {
        let p = plan(Suite::All, &names(&["small", "soak"])).unwrap();
        assert_eq!(p.cases, Some(Some(names(&["small"]))));
        assert_eq!(p.faults, Some(Some(names(&["soak"]))));
        let p = plan(Suite::All, &names(&["max-conns"])).unwrap();
        assert_eq!(
            (p.cases, p.faults),
            (None, Some(Some(names(&["max-conns"]))))
        );
        let p = plan(Suite::Faults, &[]).unwrap();
        assert_eq!((p.cases, p.faults), (None, Some(None)));
        let err = plan(Suite::Cases, &names(&["soak"])).err().unwrap();
        assert!(err.contains("'soak' is a fault"), "{err}");
        let err = plan(Suite::All, &names(&["soap"])).err().unwrap();
        assert!(err.contains("unknown case or fault 'soap'"), "{err}");
    }
}
