#![cfg(feature = "grade")]
//! Grading of `epoll-edge-triggered`: the conformance cases an
//! edge-triggered loop fails when it does not drain (more data than one
//! read, many requests in flight, EOF behind data, a burst of connections),
//! plus many clients that send and half-close at once, so that data and
//! EOF often arrive as a single edge.
//!
//! Only built with `--features grade`, so a plain `cargo test --workspace`
//! does not grade the unsolved starter.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::time::Duration;

use echo_conformance::{ServerProcess, run_suite};

const BIN: &str = env!("CARGO_BIN_EXE_ex-epoll-edge-triggered");
const CASES: &[&str] = &[
    "large-1mib",
    "pipelined-1000",
    "half-close",
    "concurrent-200",
];
const TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn drains_every_edge() {
    let server = ServerProcess::spawn(Path::new(BIN), &[]).unwrap_or_else(|e| panic!("{e}"));
    let only: Vec<String> = CASES.iter().map(|c| c.to_string()).collect();
    let report = run_suite(&server.target(), &[], Some(&only), &mut |o| {
        eprintln!("{o}")
    });
    let _ = server.terminate();
    let report = report.unwrap_or_else(|e| panic!("the suite could not run: {e}"));
    assert!(report.ok(), "not every edge is drained:\n{report}");
    assert_eq!(report.outcomes.len(), CASES.len(), "{report}");
}

#[test]
fn data_then_eof_in_one_burst() {
    let server = ServerProcess::spawn(Path::new(BIN), &[]).unwrap_or_else(|e| panic!("{e}"));
    // All clients write and half-close before reading anything, so the
    // server sees most of them with their bytes and their FIN already
    // queued: one edge for both.
    let msg: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let mut clients = Vec::new();
    for _ in 0..50 {
        let mut c = TcpStream::connect_timeout(&server.addr(), TIMEOUT).expect("connect");
        c.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
        c.set_write_timeout(Some(TIMEOUT)).expect("write timeout");
        c.write_all(&msg).expect("send");
        c.shutdown(Shutdown::Write).expect("half-close");
        clients.push(c);
    }
    for (i, mut c) in clients.into_iter().enumerate() {
        let mut back = Vec::new();
        // read_to_end needs the server's FIN: a server that missed the
        // client's EOF times out here instead.
        if let Err(e) = c.read_to_end(&mut back) {
            panic!(
                "client {i}: no complete echo and close within {TIMEOUT:?} ({} of {} bytes): {e}",
                back.len(),
                msg.len()
            );
        }
        assert!(
            back == msg,
            "client {i}: got {} bytes back, not the {} sent",
            back.len(),
            msg.len()
        );
    }
    let status = server.terminate().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "exit after SIGTERM: {status}");
}
