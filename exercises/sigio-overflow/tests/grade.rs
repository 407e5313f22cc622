#![cfg(feature = "grade")]
//! Grading of `sigio-overflow`: the server runs with a tiny
//! `RLIMIT_SIGPENDING` (set by `setrlimit(2)` between `fork` and `exec`),
//! so that the real-time signal queue overflows. With 8 places and 200
//! clients writing while the server is stopped, every client must get its
//! echo; with no place at all, where every piece of news comes as a bare
//! `SIGIO`, the cases must pass.
//!
//! Only built with `--features grade`, so a plain `cargo test --workspace`
//! does not grade the unsolved starter.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use echo_conformance::{ServerProcess, run_suite};

const BIN: &str = env!("CARGO_BIN_EXE_ex-sigio-overflow");
const CASES: &[&str] = &[
    "small",
    "large-1mib",
    "pipelined-1000",
    "concurrent-200",
    "interleaved",
    "churn",
    "idle-500",
];

/// The server, started with `RLIMIT_SIGPENDING` at `limit`.
fn spawn(limit: u64) -> ServerProcess {
    let mut cmd = Command::new(BIN);
    cmd.args(["--addr", "127.0.0.1:0"]);
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed; it makes one `setrlimit(2)`
    // call and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let rlim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_SIGPENDING, &rlim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    ServerProcess::spawn_command(cmd).unwrap_or_else(|e| panic!("{e}"))
}

fn signal(server: &ServerProcess, sig: libc::c_int) {
    // SAFETY: kill(2) with the pid of a child that `server` has not reaped.
    let rc = unsafe { libc::kill(server.pid() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
}

#[test]
fn serves_every_client_after_an_overflow() {
    const CLIENTS: usize = 200;
    let server = spawn(8);
    let mut clients: Vec<TcpStream> = Vec::new();
    for i in 0..CLIENTS {
        let mut c = server.client();
        let msg = format!("hello from {i}\n");
        c.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0; msg.len()];
        c.read_exact(&mut back).unwrap_or_else(|e| {
            panic!("client {i}, connected one after the other, got no echo: {e}")
        });
        clients.push(c);
    }
    // Stopped, the server reads no signal: the 9th piece of news overflows.
    signal(&server, libc::SIGSTOP);
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(format!("message {i}\n").as_bytes()).unwrap();
    }
    signal(&server, libc::SIGCONT);
    // All echoes are due within 5 s together; past that, each read only
    // collects what has already come (1 ms), so that a server that lost
    // most of them fails in seconds, not 200 read timeouts.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut lost = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        let msg = format!("message {i}\n");
        let mut back = vec![0; msg.len()];
        let left = deadline.saturating_duration_since(Instant::now());
        c.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match c.read_exact(&mut back) {
            Ok(()) => assert_eq!(back, msg.as_bytes(), "client {i}"),
            Err(_) => lost.push(i),
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {CLIENTS} clients got no echo after the signal queue overflowed \
         (clients {:?}...)",
        lost.len(),
        &lost[..lost.len().min(8)]
    );
    for c in &mut clients {
        c.shutdown(Shutdown::Write).unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let mut rest = Vec::new();
        c.read_to_end(&mut rest)
            .unwrap_or_else(|e| panic!("client {i}: no EOF: {e}"));
        assert!(rest.is_empty(), "client {i}: bytes after the echo");
    }
}

#[test]
fn passes_the_cases_when_every_signal_overflows() {
    let server = spawn(0);
    let only: Vec<String> = CASES.iter().map(|c| c.to_string()).collect();
    let report = run_suite(&server.target(), &[], Some(&only), &mut |o| {
        eprintln!("{o}")
    });
    let _ = server.terminate();
    let report = report.unwrap_or_else(|e| panic!("the suite could not run: {e}"));
    assert!(report.ok(), "not every case passes:\n{report}");
    assert_eq!(report.outcomes.len(), CASES.len(), "{report}");
}
