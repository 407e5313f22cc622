//! The conformance suite: what every echo server must do, checked over real
//! sockets.
//!
//! Each case is a small client program written with blocking `std` sockets
//! (`connect`, `read`, `write`, `shutdown`, `SO_LINGER`, `TCP_NODELAY`) with a
//! timeout on every wait, so a broken server makes a case fail with a precise
//! detail instead of hanging the harness. Streams are checked as they arrive:
//! the first wrong byte ends a case at once, named by its offset.
//!
//! The suite is used two ways. `echo-bench check` runs it against a model or
//! any running server ([`run_suite`]); each model crate's tests spawn the
//! model's binary on `127.0.0.1:0` and call [`assert_conforms`],
//! [`cli::assert_rejects_bad_input`] and the checks in [`limits`].
//!
//! A design that cannot meet a case by construction (the iterative server
//! cannot serve two clients at once) declares it in its binary
//! (`--expected-limits`); there a failure is reported as an expected limit,
//! and a pass as an unexpected pass, so the declaration cannot go stale.

#![warn(missing_docs)]

mod cases;
pub mod cgroup;
pub mod cli;
mod faults;
pub mod limits;
mod process;
pub mod tree;

use std::fmt;
use std::net::{SocketAddr, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub use faults::{
    FaultTarget, MAX_CONNS, SOAK_BYTES, SOAK_CONNS, SOAK_PSS_LIMIT, STORM_CPU_LIMIT, STORM_FACTOR,
    STORM_NOFILE, run_faults,
};
pub use process::{LEFT_SETTLE, ServerProcess, Stopped};

/// Every case, in the order the suite runs them.
/// One client at a time first, then several at once, then resets and
/// churn, then the cases that hold hundreds of connections; a server that
/// fails an early one usually fails the later ones too, so the first
/// failure in the list is the one to read.
pub const CASES: &[&str] = &[
    "small",
    "all-bytes",
    "large-1mib",
    "pipelined-1000",
    "half-close",
    "sequential-1000",
    "concurrent-200",
    "interleaved",
    "reset-isolation",
    "reset-pending",
    "reset-before-accept",
    "churn",
    "slow-reader",
    "idle-500",
    "beyond-fd-setsize",
];

/// Every fault of the fault suite, in the order it runs them
/// ([`run_faults`]). A model's expected limits may name these as well as
/// [`CASES`]. SIGTERM comes last: against an external server it is the
/// fault that ends it.
pub const FAULTS: &[&str] = &[
    "descriptor-storm",
    "max-conns",
    "soak",
    "sigterm-mid-transfer",
];

/// Why a case or a fault failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The server fell short of what the case asks (a client not served in
    /// time, a connection refused): a declared expected limit excuses this.
    Short(String),
    /// The server broke: it crashed, spun, leaked, lost or corrupted bytes.
    /// No expected limit excuses this.
    Broken(String),
}

impl Failure {
    /// What went wrong.
    pub fn detail(&self) -> &str {
        match self {
            Failure::Short(d) | Failure::Broken(d) => d,
        }
    }
}

/// Plain messages from the helpers are shortfalls; breakage is said
/// explicitly with [`Failure::Broken`].
impl From<String> for Failure {
    fn from(detail: String) -> Failure {
        Failure::Short(detail)
    }
}

/// How much the server tree's memory (proportional set size, summed over
/// the tree) may grow while a client offers up to 256 MiB and reads
/// nothing (the `slow-reader` case).
///
/// PSS counts user-space memory only: what sits in kernel socket buffers
/// (a few MiB at most on loopback) is not in it. A server that keeps a
/// bounded output buffer per connection stops reading from a client that
/// does not read, so it grows by little more than that buffer (echo-epoll:
/// 1 MiB); a server that buffers everything it reads grows with what the
/// client offers, far past 64 MiB within a second. 64 MiB sits far from
/// both, so neither allocator noise nor a generous fixed buffer makes the
/// verdict flaky. PSS rather than the sum of RSS: a forking server's
/// children share their parent's pages, and summing RSS would count those
/// once per child.
pub const SLOW_READER_PSS_LIMIT: u64 = 64 << 20;

/// What the suite runs against.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where the server listens.
    pub addr: SocketAddr,
    /// The server's process id, when known: enables the checks that read
    /// `/proc` (memory in `slow-reader`, leaks in `churn`, spinning in
    /// `beyond-fd-setsize`) and the check after every case that the server
    /// is still alive.
    pub pid: Option<u32>,
}

/// The result of one case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The case passed.
    Pass,
    /// The case failed.
    Fail,
    /// The case failed, and the design declares it cannot meet it.
    ExpectedLimit,
    /// The case passed although the design declares it cannot: the
    /// declaration is wrong, which counts as a failure.
    UnexpectedPass,
    /// The fault could not be run against this target (an external server
    /// without the pid or the `--max-conns` it needs): neither a pass nor a
    /// failure, and said so with the reason.
    NotRun,
}

impl Verdict {
    /// True for [`Verdict::Pass`] and [`Verdict::ExpectedLimit`].
    pub fn is_ok(self) -> bool {
        matches!(self, Verdict::Pass | Verdict::ExpectedLimit)
    }

    fn from_result(passed: bool, expected_limit: bool) -> Verdict {
        match (passed, expected_limit) {
            (true, false) => Verdict::Pass,
            (false, false) => Verdict::Fail,
            (false, true) => Verdict::ExpectedLimit,
            (true, true) => Verdict::UnexpectedPass,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::ExpectedLimit => "expected limit",
            Verdict::UnexpectedPass => "UNEXPECTED PASS",
            Verdict::NotRun => "not run",
        }
    }
}

/// One finished case.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The case name, one of [`CASES`].
    pub case: &'static str,
    /// What came of it.
    pub verdict: Verdict,
    /// What went wrong (or, for a pass, what was measured).
    pub detail: String,
    /// How long the case took.
    pub elapsed: Duration,
}

/// Width of the longest label, "UNEXPECTED PASS", and of the longest case
/// name, "reset-before-accept".
pub(crate) const LABEL_WIDTH: usize = 15;
pub(crate) const CASE_WIDTH: usize = 19;

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = self.verdict.label();
        write!(f, "{label:<LABEL_WIDTH$}  {:<CASE_WIDTH$}  ", self.case)?;
        if !self.detail.is_empty() {
            write!(f, "{} ", self.detail)?;
        }
        write!(f, "({:.2} s)", self.elapsed.as_secs_f64())
    }
}

/// Every outcome of one run of the suite.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// In the order the cases ran.
    pub outcomes: Vec<Outcome>,
}

impl Report {
    /// Cases that passed or hit an expected limit.
    pub fn passed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.verdict.is_ok()).count()
    }

    /// Cases that failed or passed unexpectedly.
    pub fn failed(&self) -> usize {
        self.outcomes.len() - self.passed() - self.not_run()
    }

    /// Faults that could not be run against the target.
    pub fn not_run(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.verdict == Verdict::NotRun)
            .count()
    }

    /// True when nothing failed.
    pub fn ok(&self) -> bool {
        self.failed() == 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for outcome in &self.outcomes {
            writeln!(f, "{outcome}")?;
        }
        let limits: Vec<&str> = self
            .outcomes
            .iter()
            .filter(|o| o.verdict == Verdict::ExpectedLimit)
            .map(|o| o.case)
            .collect();
        if !limits.is_empty() {
            let noun = if limits.len() == 1 { "limit" } else { "limits" };
            writeln!(
                f,
                "{} expected {noun} counted as passed: {}",
                limits.len(),
                limits.join(", ")
            )?;
        }
        write!(f, "{} passed, {} failed", self.passed(), self.failed())?;
        match self.not_run() {
            0 => Ok(()),
            n => write!(f, ", {n} not run"),
        }
    }
}

/// Runs the cases (all of [`CASES`], or those named in `only`, in `CASES`
/// order), calling `on_outcome` as each finishes (for live progress).
/// `expected_limits` names cases the design cannot meet: there a failing case
/// becomes [`Verdict::ExpectedLimit`] and a passing one
/// [`Verdict::UnexpectedPass`]. `Err` only for setup problems: an unknown
/// case name in `only` or in `expected_limits`, or a target not reachable.
pub fn run_suite(
    target: &Target,
    expected_limits: &[String],
    only: Option<&[String]>,
    on_outcome: &mut dyn FnMut(&Outcome),
) -> Result<Report, String> {
    for name in expected_limits {
        if !FAULTS.contains(&name.as_str()) {
            check_case_name(name, "the expected limits")?;
        }
    }
    let selected: Vec<&'static str> = match only {
        None => CASES.to_vec(),
        Some(names) => {
            for name in names {
                check_case_name(name, "the cases to run")?;
            }
            CASES
                .iter()
                .copied()
                .filter(|case| names.iter().any(|n| n == case))
                .collect()
        }
    };
    // beyond-fd-setsize holds 1,100 sockets; against an in-process server,
    // twice that.
    raise_nofile_limit()?;
    TcpStream::connect_timeout(&target.addr, Duration::from_secs(3))
        .map_err(|e| format!("cannot connect to {}: {e}", target.addr))?;

    let mut report = Report::default();
    for case in selected {
        let start = Instant::now();
        // A bug in a case must not take the harness down with it.
        let result =
            catch_unwind(AssertUnwindSafe(|| cases::run(case, target))).unwrap_or_else(|panic| {
                Err(Failure::Broken(format!(
                    "the case panicked: {}",
                    panic_text(&panic)
                )))
            });
        let result = still_alive(target, result);
        let expected = expected_limits.iter().any(|n| n == case);
        let outcome = judge(case, result, expected, start.elapsed());
        on_outcome(&outcome);
        report.outcomes.push(outcome);
    }
    Ok(report)
}

/// A server that died during a case fails it as broken, whatever the
/// case's own result (a dead server usually shows first as a refused or
/// reset connection, which alone would read as a shortfall).
fn still_alive(target: &Target, result: Result<String, Failure>) -> Result<String, Failure> {
    let Some(pid) = target.pid else {
        return result;
    };
    // A process that crashed is still unwinding or exiting for a moment
    // after its sockets reset: when the case failed, give it that moment
    // (bounded) to be seen gone, so the failure names the crash instead of
    // its symptom. A passing case needs no wait: a live server answered.
    if result.is_err() {
        let deadline = Instant::now() + EXIT_GRACE;
        while tree::alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    if tree::alive(pid) {
        return result;
    }
    let during = match &result {
        Err(f) => format!(" (the case saw: {})", f.detail()),
        Ok(_) => String::new(),
    };
    Err(Failure::Broken(format!(
        "the server pid {pid} {} during this case{during}",
        tree::describe_end(pid)
    )))
}

/// How long a failed case waits to see whether the server is exiting.
const EXIT_GRACE: Duration = Duration::from_millis(200);

/// Turns a case's result into an outcome. A declared expected limit excuses
/// a shortfall, never breakage, and a pass under a declared limit says the
/// declaration is stale.
pub(crate) fn judge(
    case: &'static str,
    result: Result<String, Failure>,
    expected: bool,
    elapsed: Duration,
) -> Outcome {
    let (verdict, detail) = match result {
        Ok(d) => {
            let verdict = Verdict::from_result(true, expected);
            let detail = match (verdict, d.is_empty()) {
                (Verdict::UnexpectedPass, true) => {
                    "passed, but the design declares it an expected limit".to_string()
                }
                (Verdict::UnexpectedPass, false) => {
                    format!("passed, but the design declares it an expected limit; {d}")
                }
                _ => d,
            };
            (verdict, detail)
        }
        Err(Failure::Short(d)) => (Verdict::from_result(false, expected), d),
        Err(Failure::Broken(d)) if expected => (
            Verdict::Fail,
            format!("{d} (a declared limit excuses a shortfall, not this)"),
        ),
        Err(Failure::Broken(d)) => (Verdict::Fail, d),
    };
    Outcome {
        case,
        verdict,
        detail,
        elapsed,
    }
}

fn check_case_name(name: &str, list: &str) -> Result<(), String> {
    if CASES.contains(&name) {
        Ok(())
    } else {
        Err(format!(
            "unknown case '{name}' in {list}; the cases are: {}",
            CASES.join(", ")
        ))
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

fn raise_nofile_limit() -> Result<(), String> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|e| format!("cannot read RLIMIT_NOFILE: {e}"))?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
            .map_err(|e| format!("cannot raise RLIMIT_NOFILE to {hard}: {e}"))?;
    }
    Ok(())
}

/// Runs `<bin> --expected-limits` (a hidden flag of every model; prints one
/// case per line, exit 0) and returns the lines.
pub fn expected_limits(bin: &Path) -> Result<Vec<String>, String> {
    let mut cmd = Command::new(bin);
    cmd.arg("--expected-limits");
    let out = process::run_bounded(cmd, Duration::from_secs(10))?;
    if !out.status.success() {
        return Err(format!(
            "{} --expected-limits exited with {}: {}",
            bin.display(),
            out.status,
            out.stderr.lines().next().unwrap_or("(no message)")
        ));
    }
    Ok(out
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// Spawn, learn expected limits from the binary, run the whole suite, then
/// terminate; panics with the full [`Report`] text unless `report.ok()`, and
/// unless the server exits with status 0 after SIGTERM.
pub fn assert_conforms(bin: &Path, args: &[&str]) {
    let name = bin.display();
    let limits = expected_limits(bin).unwrap_or_else(|e| panic!("{e}"));
    let server = ServerProcess::spawn(bin, args).unwrap_or_else(|e| panic!("{e}"));
    let report = run_suite(&server.target(), &limits, None, &mut |o| eprintln!("{o}"));
    let status = server.terminate();
    let report = report.unwrap_or_else(|e| panic!("{name}: the suite could not run: {e}"));
    assert!(report.ok(), "{name} does not conform:\n{report}");
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{name} passed the suite but exited with {s} after SIGTERM (expected 0)"),
        Err(e) => panic!("{name} passed the suite but {e}"),
    }
}

/// The fault suite against `bin` started with `args` (a fresh server per
/// fault), with the expected limits the binary declares; panics with the
/// full [`Report`] text unless `report.ok()`.
pub fn assert_survives_faults(bin: &Path, args: &[&str]) {
    let name = bin.display();
    let limits = expected_limits(bin).unwrap_or_else(|e| panic!("{e}"));
    let target = FaultTarget::Binary {
        bin: bin.to_path_buf(),
        args: args.iter().map(|a| a.to_string()).collect(),
    };
    let report = run_faults(&target, &limits, None, &mut |o| eprintln!("{o}"))
        .unwrap_or_else(|e| panic!("{name}: the fault suite could not run: {e}"));
    assert!(report.ok(), "{name} {args:?}: the faults failed:\n{report}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(case: &'static str, verdict: Verdict, detail: &str) -> Outcome {
        Outcome {
            case,
            verdict,
            detail: detail.to_string(),
            elapsed: Duration::from_millis(1500),
        }
    }

    #[test]
    fn verdict_mapping() {
        assert_eq!(Verdict::from_result(true, false), Verdict::Pass);
        assert_eq!(Verdict::from_result(false, false), Verdict::Fail);
        assert_eq!(Verdict::from_result(false, true), Verdict::ExpectedLimit);
        assert_eq!(Verdict::from_result(true, true), Verdict::UnexpectedPass);
        let ok: Vec<bool> = [
            Verdict::Pass,
            Verdict::Fail,
            Verdict::ExpectedLimit,
            Verdict::UnexpectedPass,
        ]
        .map(Verdict::is_ok)
        .to_vec();
        assert_eq!(ok, [true, false, true, false]);
    }

    #[test]
    fn outcome_lines_are_aligned() {
        let pass = outcome("small", Verdict::Pass, "").to_string();
        let fail = outcome("concurrent-200", Verdict::Fail, "client 2: no echo").to_string();
        assert_eq!(pass, format!("{:<15}  {:<19}  (1.50 s)", "pass", "small"));
        assert_eq!(
            fail,
            format!(
                "{:<15}  {:<19}  client 2: no echo (1.50 s)",
                "FAIL", "concurrent-200"
            )
        );
        let unexpected = outcome("idle-500", Verdict::UnexpectedPass, "x").to_string();
        assert_eq!(unexpected.find("idle-500"), fail.find("concurrent-200"));
    }

    #[test]
    fn report_closing_lines() {
        let mut report = Report {
            outcomes: vec![
                outcome("small", Verdict::Pass, ""),
                outcome(
                    "concurrent-200",
                    Verdict::ExpectedLimit,
                    "client 1: no echo",
                ),
                outcome("idle-500", Verdict::ExpectedLimit, "client 1: no echo"),
            ],
        };
        assert_eq!(
            (report.passed(), report.failed(), report.ok()),
            (3, 0, true)
        );
        let text = report.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(
            lines[3],
            "2 expected limits counted as passed: concurrent-200, idle-500"
        );
        assert_eq!(lines[4], "3 passed, 0 failed");

        report
            .outcomes
            .push(outcome("half-close", Verdict::Fail, "no EOF"));
        report
            .outcomes
            .push(outcome("all-bytes", Verdict::UnexpectedPass, ""));
        assert_eq!(
            (report.passed(), report.failed(), report.ok()),
            (3, 2, false)
        );
        assert!(report.to_string().ends_with("\n3 passed, 2 failed"));
        assert_eq!(Report::default().to_string(), "0 passed, 0 failed");
    }

    #[test]
    fn unknown_case_names_are_setup_errors() {
        // The names are checked before anything connects, so no server is needed.
        let target = Target {
            addr: "127.0.0.1:9".parse().unwrap(),
            pid: None,
        };
        let err = run_suite(&target, &["smal".into()], None, &mut |_| {}).unwrap_err();
        assert!(
            err.contains("unknown case 'smal' in the expected limits"),
            "{err}"
        );
        let only = ["small".to_string(), "everything".to_string()];
        let err = run_suite(&target, &[], Some(&only), &mut |_| {}).unwrap_err();
        assert!(err.contains("unknown case 'everything'"), "{err}");
    }
}
