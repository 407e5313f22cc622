#![cfg(feature = "grade")]
//! Grading of `busy-poll-idle`: with silent clients, and with a client that
//! stopped reading its echo, the server must take its pause (it goes to
//! sleep hundreds of times a second) and stay far from a core; and it must
//! still echo, which the conformance cases check.
//!
//! The pause is seen by counting the loop's sleeps (the kernel's voluntary
//! context switches of the server's main thread), not by its CPU alone: on
//! a shared machine a spinning server may get only part of a core, while
//! it never sleeps however little it gets.
//!
//! Only built with `--features grade`, so a plain `cargo test --workspace`
//! does not grade the unsolved starter.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use echo_conformance::{ServerProcess, run_suite, tree};

const BIN: &str = env!("CARGO_BIN_EXE_ex-busy-poll-idle");

/// The measuring window; not a wait for something to happen.
const WINDOW: Duration = Duration::from_secs(1);

/// With the default pause of 1 ms, about 1000 sleeps fit in the window;
/// fewer than this would mean idle sweeps of 10 ms, which a handful of
/// sockets never take.
const MIN_SLEEPS: u64 = 100;

/// Most of a core an idle server may use: far above a pausing loop's few
/// percent, far below a spinning one's whole core.
const MAX_SHARE: f64 = 0.25;

fn spawn() -> ServerProcess {
    ServerProcess::spawn(Path::new(BIN), &[]).unwrap_or_else(|e| panic!("{e}"))
}

/// Voluntary context switches of the server's main thread (it runs the loop).
fn sleeps(pid: u32) -> u64 {
    tree::task_switches(pid)
        .into_iter()
        .find(|&(tid, _, _)| tid == pid)
        .map(|(_, voluntary, _)| voluntary)
        .expect("the server's main thread is gone")
}

/// Measures the server over [`WINDOW`] and asserts it paused, saying `while`
/// what was going on.
fn assert_pauses(server: &ServerProcess, while_: &str) {
    let pid = server.pid();
    let cpu = || tree::process_cpu_ns(pid).expect("the server is gone");
    let (cpu0, slept0, started) = (cpu(), sleeps(pid), Instant::now());
    thread::sleep(WINDOW);
    let (spent, slept) = (cpu() - cpu0, sleeps(pid) - slept0);
    let share = spent as f64 / started.elapsed().as_nanos() as f64;
    assert!(
        slept >= MIN_SLEEPS && share < MAX_SHARE,
        "while {while_}, the server slept {slept} times in {WINDOW:?} (at least {MIN_SLEEPS} \
         expected) and used {:.0} % of a core (at most {:.0} %): it never takes its pause",
        share * 100.0,
        MAX_SHARE * 100.0
    );
}

fn round_trip(c: &mut TcpStream, msg: &[u8]) {
    c.write_all(msg).expect("send");
    let mut back = vec![0u8; msg.len()];
    c.read_exact(&mut back).expect("echo");
    assert_eq!(back, msg);
}

#[test]
fn pauses_with_silent_clients() {
    let server = spawn();
    assert_pauses(&server, "no client was connected");
    let mut clients: Vec<TcpStream> = (0..10).map(|_| server.client()).collect();
    for c in &mut clients {
        round_trip(c, b"hello");
    }
    assert_pauses(&server, "10 connected clients sat silent");
    for c in &mut clients {
        round_trip(c, b"still there");
    }
    drop(clients);
    let status = server.terminate().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "exit after SIGTERM: {status}");
}

#[test]
fn pauses_while_a_client_does_not_read() {
    let server = spawn();
    let mut hog = server.client();
    // Send until the server stops reading us (its output is past the cap
    // and our socket buffers are full): 500 ms without progress.
    hog.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match hog.write(&chunk) {
            Ok(_) => assert!(
                Instant::now() < deadline,
                "the server never stopped reading"
            ),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    assert_pauses(&server, "a client had stopped reading its echo");
    drop(hog);
    let status = server.terminate().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "exit after SIGTERM: {status}");
}

#[test]
fn still_echoes() {
    const CASES: &[&str] = &[
        "small",
        "large-1mib",
        "pipelined-1000",
        "half-close",
        "concurrent-200",
        "slow-reader",
    ];
    let server = spawn();
    let only: Vec<String> = CASES.iter().map(|c| c.to_string()).collect();
    let report = run_suite(&server.target(), &[], Some(&only), &mut |o| {
        eprintln!("{o}")
    });
    let _ = server.terminate();
    let report = report.unwrap_or_else(|e| panic!("the suite could not run: {e}"));
    assert!(report.ok(), "the echo broke:\n{report}");
    assert_eq!(report.outcomes.len(), CASES.len(), "{report}");
}
