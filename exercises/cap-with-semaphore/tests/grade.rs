#![cfg(feature = "grade")]
//! Grading of `cap-with-semaphore`: the semaphore on its own, the server
//! with `--max-conns 3` (a fourth client waits, then is served), and the
//! whole conformance suite with the default cap.
//!
//! Only built with `--features grade`, so a plain `cargo test --workspace`
//! does not grade the unsolved starter.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use echo_conformance::ServerProcess;
use ex_cap_with_semaphore::Semaphore;

const BIN: &str = env!("CARGO_BIN_EXE_ex-cap-with-semaphore");
/// How long a client over the cap must go without an echo.
const NO_ECHO_FOR: Duration = Duration::from_millis(700);
/// How long a waiting client may take to be served once a permit is free.
const SERVED_WITHIN: Duration = Duration::from_secs(3);

#[test]
fn semaphore_blocks_when_empty_and_wakes_on_release() {
    let sem = Arc::new(Semaphore::new(2));
    let first = sem.acquire();
    let second = sem.acquire();

    let (got, permit) = mpsc::channel();
    let waiter = Arc::clone(&sem);
    // Not joined on failure: a waiter stuck forever must not hang the test,
    // and the process ends with the test anyway.
    thread::spawn(move || {
        let third = waiter.acquire();
        let _ = got.send(third);
    });
    assert_eq!(
        permit.recv_timeout(Duration::from_millis(300)).err(),
        Some(RecvTimeoutError::Timeout),
        "a third permit was granted while both permits of a 2-permit semaphore were held"
    );
    drop(first);
    let third = permit
        .recv_timeout(SERVED_WITHIN)
        .expect("dropping a permit did not let the waiting acquire through");
    drop(third);
    drop(second);

    // Both permits are back: two acquires in a row both go through.
    let (got, permits) = mpsc::channel();
    thread::spawn(move || {
        let pair = (sem.acquire(), sem.acquire());
        let _ = got.send(pair);
    });
    assert!(
        permits.recv_timeout(SERVED_WITHIN).is_ok(),
        "after every permit was dropped, two acquires did not both succeed"
    );
}

fn connect(server: &ServerProcess) -> TcpStream {
    let stream = TcpStream::connect_timeout(&server.addr(), SERVED_WITHIN).expect("connect");
    stream
        .set_write_timeout(Some(SERVED_WITHIN))
        .expect("write timeout");
    stream
}

/// Sends `msg` and reads the same bytes back, within `SERVED_WITHIN`.
fn assert_echoes(stream: &mut TcpStream, msg: &[u8], who: &str) {
    stream.write_all(msg).expect("send");
    stream
        .set_read_timeout(Some(SERVED_WITHIN))
        .expect("read timeout");
    let mut back = vec![0u8; msg.len()];
    if let Err(e) = stream.read_exact(&mut back) {
        panic!("{who}: no echo within {SERVED_WITHIN:?}: {e}");
    }
    assert_eq!(back, msg, "{who}: the echo differs from what was sent");
}

#[test]
fn client_over_the_cap_waits_for_a_permit() {
    let server = ServerProcess::spawn(Path::new(BIN), &["--max-conns", "3"])
        .unwrap_or_else(|e| panic!("{e}"));

    let mut served: Vec<TcpStream> = Vec::new();
    for i in 0..3 {
        let mut c = connect(&server);
        assert_echoes(
            &mut c,
            format!("client {i}").as_bytes(),
            &format!("client {i} of 3"),
        );
        served.push(c);
    }

    // The kernel completes the handshake from the backlog, so connecting
    // and sending succeed; only the echo must wait.
    let mut fourth = connect(&server);
    fourth
        .write_all(b"fourth")
        .expect("send from the fourth client");
    fourth
        .set_read_timeout(Some(NO_ECHO_FOR))
        .expect("read timeout");
    let mut buf = [0u8; 64];
    match fourth.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Ok(0) => panic!("the fourth client was closed: over the cap it must wait, not be refused"),
        Ok(n) => panic!(
            "the fourth client got {:?} back while 3 clients held all 3 permits",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => panic!("the fourth client's connection failed instead of waiting: {e}"),
    }

    // One client leaves: its permit lets the fourth in.
    drop(served.remove(0));
    fourth
        .set_read_timeout(Some(SERVED_WITHIN))
        .expect("read timeout");
    let mut back = [0u8; 6];
    if let Err(e) = fourth.read_exact(&mut back) {
        panic!(
            "a permit was freed but the fourth client got no echo within {SERVED_WITHIN:?}: {e}"
        );
    }
    assert_eq!(&back, b"fourth");

    // The two that stayed are still served.
    for (i, c) in served.iter_mut().enumerate() {
        assert_echoes(c, b"still here", &format!("remaining client {i}"));
    }
    drop(served);
    drop(fourth);
    let status = server.terminate().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "exit after SIGTERM: {status}");
}

#[test]
fn conforms_with_the_default_cap() {
    echo_conformance::assert_conforms(Path::new(BIN), &[]);
}
