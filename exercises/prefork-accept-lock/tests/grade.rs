#![cfg(feature = "grade")]
//! Grading of `prefork-accept-lock`: with `--workers 4`, four clients
//! connected at once must all be served while the others stay connected
//! and idle; clients one after another must each get their echo and EOF;
//! SIGTERM ends the server cleanly.
//!
//! Only built with `--features grade`, so a plain `cargo test --workspace`
//! does not grade the unsolved starter.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::time::Duration;

use echo_conformance::ServerProcess;

const BIN: &str = env!("CARGO_BIN_EXE_ex-prefork-accept-lock");
/// How long a client may wait for its echo when a worker is free for it.
const SERVED_WITHIN: Duration = Duration::from_secs(3);

fn connect(server: &ServerProcess) -> TcpStream {
    let stream = TcpStream::connect_timeout(&server.addr(), SERVED_WITHIN).expect("connect");
    stream
        .set_read_timeout(Some(SERVED_WITHIN))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(SERVED_WITHIN))
        .expect("write timeout");
    stream
}

/// Sends `msg` and reads the same bytes back, within `SERVED_WITHIN`.
fn assert_echoes(stream: &mut TcpStream, msg: &[u8], who: &str) {
    stream.write_all(msg).expect("send");
    let mut back = vec![0u8; msg.len()];
    if let Err(e) = stream.read_exact(&mut back) {
        panic!("{who}: no echo within {SERVED_WITHIN:?}: {e}");
    }
    assert_eq!(back, msg, "{who}: the echo differs from what was sent");
}

/// Half-closes and expects EOF, with nothing more, within `SERVED_WITHIN`.
fn assert_eof(stream: &mut TcpStream, who: &str) {
    stream.shutdown(Shutdown::Write).expect("half-close");
    let mut rest = Vec::new();
    if let Err(e) = stream.read_to_end(&mut rest) {
        panic!("{who}: no EOF within {SERVED_WITHIN:?} after half-closing: {e}");
    }
    assert!(
        rest.is_empty(),
        "{who}: {} bytes after the echo",
        rest.len()
    );
}

#[test]
fn four_workers_serve_four_clients_at_once() {
    let server =
        ServerProcess::spawn(Path::new(BIN), &["--workers", "4"]).unwrap_or_else(|e| panic!("{e}"));
    // All four connect first, then each in turn speaks while the other
    // three stay connected and silent: with four workers, nobody's echo
    // may depend on another client leaving.
    let mut clients: Vec<TcpStream> = (0..4).map(|_| connect(&server)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_echoes(
            c,
            format!("client {i} of 4, the others connected and idle").as_bytes(),
            &format!("client {i} of 4 (4 workers)"),
        );
    }
    // And again, in the other order: every worker still has its client.
    for (i, c) in clients.iter_mut().enumerate().rev() {
        assert_echoes(c, b"still here", &format!("client {i}, second round"));
    }
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eof(c, &format!("client {i}"));
    }
    drop(clients);
    let status = server.terminate().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "exit after SIGTERM: {status}");
}

#[test]
fn clients_one_after_another_get_echo_and_eof() {
    let server =
        ServerProcess::spawn(Path::new(BIN), &["--workers", "4"]).unwrap_or_else(|e| panic!("{e}"));
    for i in 0..40u32 {
        let mut c = connect(&server);
        // A few KiB, different each time, so that a reply from the wrong
        // connection or a truncated one cannot pass.
        let msg: Vec<u8> = (0..(1000 + 97 * i)).map(|k| (k * 31 + i) as u8).collect();
        assert_echoes(&mut c, &msg, &format!("sequential client {i}"));
        assert_eof(&mut c, &format!("sequential client {i}"));
    }
    let status = server.terminate().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "exit after SIGTERM: {status}");
}
