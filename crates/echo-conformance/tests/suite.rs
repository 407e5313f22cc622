//! The suite against in-process servers: a correct one passes every case, a
//! broken one fails exactly the cases that catch its bug, with a detail
//! that says what went wrong.
//!
//! The servers here are tiny `std` programs (thread per connection, or one
//! connection at a time) on `127.0.0.1:0`, so these tests need no model
//! crate. They carry no pid, so the checks that read `/proc` (memory, leaks,
//! spinning, liveness) are skipped; `tests/slow_reader_rss.rs`, the model
//! crates' tests and `test-servers`' `cases_catch` exercise them against
//! real processes.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;

use echo_conformance::{CASES, Outcome, Report, Target, Verdict, run_suite};
use socket2::{Domain, Socket, Type};

/// Binds with the contract's backlog (4096): std's 128 would make connects
/// in concurrent-200 and beyond-fd-setsize wait for SYN retries on the
/// one-at-a-time server.
fn listen() -> TcpListener {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&addr.into()).unwrap();
    socket.listen(4096).unwrap();
    socket.into()
}

/// Echoes one connection until EOF, then closes; `keep(n)` decides whether
/// the n-th byte of the stream is echoed at all.
fn echo(mut s: TcpStream, keep: fn(u64) -> bool) {
    let mut buf = [0u8; 16 * 1024];
    let mut seen = 0u64;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let out: Vec<u8> = buf[..n]
            .iter()
            .enumerate()
            .filter(|&(i, _)| keep(seen + i as u64))
            .map(|(_, &b)| b)
            .collect();
        seen += n as u64;
        // Blocking here is the back-pressure: while this client does not
        // read, its thread does not read either.
        if s.write_all(&out).is_err() {
            break;
        }
    }
    let _ = s.shutdown(Shutdown::Write);
}

fn every_byte(_: u64) -> bool {
    true
}

fn drop_every_1000th(n: u64) -> bool {
    n % 1000 != 999
}

fn thread_per_client(keep: fn(u64) -> bool) -> Target {
    let listener = listen();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for s in listener.incoming().flatten() {
            thread::spawn(move || echo(s, keep));
        }
    });
    Target { addr, pid: None }
}

fn one_at_a_time() -> Target {
    let listener = listen();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for s in listener.incoming().flatten() {
            echo(s, every_byte);
        }
    });
    Target { addr, pid: None }
}

fn by_case(report: &Report) -> HashMap<&'static str, &Outcome> {
    report.outcomes.iter().map(|o| (o.case, o)).collect()
}

fn names(cases: &[&str]) -> Vec<String> {
    cases.iter().map(|c| c.to_string()).collect()
}

#[test]
fn a_correct_server_passes_every_case() {
    let target = thread_per_client(every_byte);
    let mut live = Vec::new();
    let report = run_suite(&target, &[], None, &mut |o| live.push(o.case)).unwrap();
    eprintln!("{report}");
    assert!(report.ok(), "{report}");
    assert_eq!(live, CASES, "progress is reported once per case, in order");
    assert_eq!((report.passed(), report.failed()), (15, 0));
    assert!(
        report.to_string().ends_with("\n15 passed, 0 failed"),
        "{report}"
    );
    let outcomes = by_case(&report);
    let slow = outcomes["slow-reader"];
    assert!(slow.detail.contains("PSS not checked (no pid)"), "{slow}");
    let churn = outcomes["churn"];
    assert!(
        churn.detail.contains("leaks not checked (no pid)"),
        "{churn}"
    );
    let beyond = outcomes["beyond-fd-setsize"];
    assert!(
        beyond.detail.contains("1100 held and served") && beyond.detail.contains("(no pid)"),
        "{beyond}"
    );
}

#[test]
fn lost_bytes_fail_the_streaming_cases_with_the_offset() {
    let target = thread_per_client(drop_every_1000th);
    let report = run_suite(&target, &[], None, &mut |_| {}).unwrap();
    eprintln!("{report}");
    let outcomes = by_case(&report);
    let failed: Vec<&str> = CASES
        .iter()
        .copied()
        .filter(|c| outcomes[c].verdict == Verdict::Fail)
        .collect();
    // Only these send 1000 bytes or more on one connection and read them
    // back (reset-pending sends megabytes but never reads).
    assert_eq!(
        failed,
        [
            "large-1mib",
            "pipelined-1000",
            "half-close",
            "interleaved",
            "slow-reader"
        ],
        "{report}"
    );
    assert_eq!(report.failed(), 5);
    // Wrong bytes are breakage, whatever a design declares.
    for case in &failed {
        assert!(
            outcomes[case]
                .detail
                .contains("first mismatch at byte offset"),
            "{}",
            outcomes[case]
        );
    }
    let large = &outcomes["large-1mib"].detail;
    assert!(
        large.contains("first mismatch at byte offset 999"),
        "{large}"
    );
    let pipelined = &outcomes["pipelined-1000"].detail;
    assert!(
        pipelined.contains("offset 999") && pipelined.contains("in message "),
        "{pipelined}"
    );
    let slow = &outcomes["slow-reader"].detail;
    assert!(
        slow.starts_with("client S") && slow.contains("offset 999"),
        "{slow}"
    );
    let half = &outcomes["half-close"].detail;
    assert!(half.contains("first mismatch at byte offset 999"), "{half}");
}

#[test]
fn one_client_at_a_time_hits_the_declared_limits() {
    let target = one_at_a_time();
    let limits = names(&[
        "concurrent-200",
        "reset-isolation",
        "slow-reader",
        "idle-500",
        "beyond-fd-setsize",
    ]);
    let report = run_suite(&target, &limits, None, &mut |_| {}).unwrap();
    eprintln!("{report}");
    let outcomes = by_case(&report);
    for case in CASES {
        let expected = if limits.iter().any(|l| l == case) {
            Verdict::ExpectedLimit
        } else {
            Verdict::Pass
        };
        assert_eq!(outcomes[case].verdict, expected, "{case}:\n{report}");
    }
    assert!(report.ok(), "{report}");
    // The second client waits behind the first, and the detail says so.
    let concurrent = &outcomes["concurrent-200"].detail;
    assert_eq!(concurrent, "client 1, round 0: no echo within 2 s");
    let slow = &outcomes["slow-reader"].detail;
    assert!(
        slow.contains("client F, round trip 0") && slow.contains("no echo within 1 s"),
        "{slow}"
    );
    // Held but not served is a shortfall; served again once they closed.
    let beyond = &outcomes["beyond-fd-setsize"].detail;
    assert!(
        beyond.starts_with("1 of 1100 served, 0 refused, 1099 unserved")
            && beyond.contains("served normally once they closed"),
        "{beyond}"
    );
    let text = report.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[lines.len() - 2..],
        [
            "5 expected limits counted as passed: concurrent-200, reset-isolation, slow-reader, idle-500, beyond-fd-setsize",
            "15 passed, 0 failed"
        ]
    );
}

#[test]
fn a_declared_limit_that_passes_is_a_failure() {
    let target = thread_per_client(every_byte);
    let only = names(&["all-bytes", "small"]);
    let report = run_suite(&target, &names(&["small"]), Some(&only), &mut |_| {}).unwrap();
    let verdicts: Vec<(&str, Verdict)> = report
        .outcomes
        .iter()
        .map(|o| (o.case, o.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("small", Verdict::UnexpectedPass),
            ("all-bytes", Verdict::Pass)
        ]
    );
    assert!(!report.ok());
    assert!(
        report.outcomes[0]
            .to_string()
            .starts_with("UNEXPECTED PASS  small")
    );
    assert!(
        report.to_string().ends_with("\n1 passed, 1 failed"),
        "{report}"
    );
}

#[test]
fn setup_problems_are_errors_not_failures() {
    let target = thread_per_client(every_byte);
    let err = run_suite(&target, &[], Some(&names(&["small", "huge"])), &mut |_| {}).unwrap_err();
    assert!(err.contains("unknown case 'huge'"), "{err}");
    let err = run_suite(&target, &names(&["idle"]), None, &mut |_| {}).unwrap_err();
    assert!(err.contains("unknown case 'idle'"), "{err}");

    // A port nobody listens on: bound, then released.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let gone = Target { addr, pid: None };
    let err = run_suite(&gone, &[], None, &mut |_| {}).unwrap_err();
    assert!(err.contains(&format!("cannot connect to {addr}")), "{err}");
}
