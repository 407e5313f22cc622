#![cfg(feature = "grade")]
//! Grading of `mio-backpressure`: a client that sends megabytes before it
//! reads must get every byte back, which needs the server to resume
//! reading after its output cap; then the conformance cases that produce
//! such clients (`half-close` with its large conversations, `slow-reader`),
//! and the ones any change to the read loop could break.
//!
//! Only built with `--features grade`, so a plain `cargo test --workspace`
//! does not grade the unsolved starter.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::path::Path;
use std::time::Duration;

use echo_conformance::{ServerProcess, run_suite};
use echo_protocol::nonblocking::{OUTPUT_CAP, READ_CHUNK};

const BIN: &str = env!("CARGO_BIN_EXE_ex-mio-backpressure");
const CASES: &[&str] = &[
    "large-1mib",
    "pipelined-1000",
    "half-close",
    "interleaved",
    "slow-reader",
    "concurrent-200",
];

/// The byte at stream offset `i`.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

#[test]
fn resumes_a_client_stopped_at_the_cap() {
    let server = ServerProcess::spawn(Path::new(BIN), &[]).unwrap_or_else(|e| panic!("{e}"));
    let mut client = server.client();
    // Send without reading until the server stops taking bytes: a write
    // that makes no progress for this long means it is at its cap and the
    // socket buffers are full.
    client
        .set_write_timeout(Some(Duration::from_millis(500)))
        .expect("write timeout");
    // The cap plus four loopback socket buffers (autotuned up to 8 MiB
    // each): past this the server is not bounding its memory at all.
    let bound = OUTPUT_CAP + READ_CHUNK + 4 * 8 * 1024 * 1024;
    let mut sent = 0usize;
    loop {
        let chunk: Vec<u8> = (sent..sent + READ_CHUNK).map(pattern).collect();
        match client.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("write after {sent} bytes: {e}"),
        }
        assert!(
            sent <= bound,
            "the server took {sent} bytes unread: no cap?"
        );
    }
    assert!(
        sent > OUTPUT_CAP,
        "only {sent} bytes sent: the server stopped before its cap"
    );

    // Now read. Part of what was sent is still in the server's socket, and
    // no new readable event will come for it: each read waits at most
    // 5 s (the client's read timeout) for the server to resume by itself.
    let mut echoed = vec![0u8; sent];
    let mut got = 0;
    while got < sent {
        match client.read(&mut echoed[got..]) {
            Ok(0) => panic!("EOF after {got} of {sent} bytes"),
            Ok(n) => got += n,
            Err(e) => panic!(
                "{got} of {sent} bytes came back, then nothing for 5 s ({e}): \
                 the server stopped reading at its cap and never came back"
            ),
        }
    }
    if let Some(i) = (0..sent).find(|&i| echoed[i] != pattern(i)) {
        panic!("byte {i} differs: {} instead of {}", echoed[i], pattern(i));
    }
    client.shutdown(Shutdown::Write).expect("half-close");
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).expect("EOF after the echo");
    assert!(rest.is_empty(), "{} bytes after the echo", rest.len());
    drop(client);
    let status = server.terminate().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "exit after SIGTERM: {status}");
}

#[test]
fn passes_the_cases() {
    let server = ServerProcess::spawn(Path::new(BIN), &[]).unwrap_or_else(|e| panic!("{e}"));
    let only: Vec<String> = CASES.iter().map(|c| c.to_string()).collect();
    let report = run_suite(&server.target(), &[], Some(&only), &mut |o| {
        eprintln!("{o}")
    });
    let _ = server.terminate();
    let report = report.unwrap_or_else(|e| panic!("the suite could not run: {e}"));
    assert!(report.ok(), "not every case passes:\n{report}");
    assert_eq!(report.outcomes.len(), CASES.len(), "{report}");
}
