#![cfg(feature = "grade")]
//! Grading of `poll-swap-remove`: clients leave one by one, in an order
//! unrelated to the order they came, while the others keep echoing; every
//! echo must come back complete to its own client. Then the conformance
//! cases in which clients come and go among others (resets, churn, many at
//! once).
//!
//! Only built with `--features grade`, so a plain `cargo test --workspace`
//! does not grade the unsolved starter.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::time::Duration;

use echo_conformance::{ServerProcess, run_suite};

const BIN: &str = env!("CARGO_BIN_EXE_ex-poll-swap-remove");
const CASES: &[&str] = &[
    "concurrent-200",
    "interleaved",
    "reset-isolation",
    "reset-pending",
    "churn",
];
const TIMEOUT: Duration = Duration::from_secs(5);
/// Clients of the leaving test. Prime, so that `LEAVE_STEP` walks them all.
const CLIENTS: usize = 13;
const LEAVE_STEP: usize = 5;

/// What client `id` sends in `round`: distinct from every other client's
/// and round's, so an echo read by the wrong socket cannot pass.
fn message(id: usize, round: usize) -> Vec<u8> {
    format!("client {id} round {round} ")
        .repeat(1 + (id * 7 + round) % 40)
        .into_bytes()
}

#[test]
fn clients_outlive_those_who_leave() {
    let server = ServerProcess::spawn(Path::new(BIN), &[]).unwrap_or_else(|e| panic!("{e}"));
    let mut live: Vec<(usize, TcpStream)> = (0..CLIENTS)
        .map(|id| {
            let c = TcpStream::connect_timeout(&server.addr(), TIMEOUT).expect("connect");
            c.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
            c.set_write_timeout(Some(TIMEOUT)).expect("write timeout");
            (id, c)
        })
        .collect();
    // Round r: everyone sends, client (r * LEAVE_STEP) % CLIENTS also
    // half-closes; then everyone reads its echo, and the leaver its EOF.
    for round in 0..CLIENTS {
        let leaver = round * LEAVE_STEP % CLIENTS;
        for (id, c) in &mut live {
            c.write_all(&message(*id, round))
                .unwrap_or_else(|e| panic!("client {id}, round {round}: cannot send: {e}"));
            if *id == leaver {
                c.shutdown(Shutdown::Write).expect("half-close");
            }
        }
        for (id, c) in &mut live {
            let want = message(*id, round);
            let mut got = vec![0u8; want.len()];
            if let Err(e) = c.read_exact(&mut got) {
                panic!(
                    "client {id}, round {round}: no complete echo within {TIMEOUT:?} \
                     (after {round} other clients left): {e}"
                );
            }
            assert!(
                got == want,
                "client {id}, round {round}: got {:?}, not its own echo",
                String::from_utf8_lossy(&got)
            );
            if *id == leaver {
                let mut rest = Vec::new();
                c.read_to_end(&mut rest)
                    .unwrap_or_else(|e| panic!("client {id}: no EOF after leaving: {e}"));
                assert!(rest.is_empty(), "client {id}: bytes after its echo");
            }
        }
        live.retain(|(id, _)| *id != leaver);
    }
    let status = server.terminate().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "exit after SIGTERM: {status}");
}

#[test]
fn clients_come_and_go_among_others() {
    let server = ServerProcess::spawn(Path::new(BIN), &[]).unwrap_or_else(|e| panic!("{e}"));
    let only: Vec<String> = CASES.iter().map(|c| c.to_string()).collect();
    let report = run_suite(&server.target(), &[], Some(&only), &mut |o| {
        eprintln!("{o}")
    });
    let _ = server.terminate();
    let report = report.unwrap_or_else(|e| panic!("the suite could not run: {e}"));
    assert!(report.ok(), "clients go out of step:\n{report}");
    assert_eq!(report.outcomes.len(), CASES.len(), "{report}");
}
