#![cfg(feature = "grade")]
//! Grading of `pool-deadlock`: a pool of 2 workers and 1 queue slot, and
//! more clients than both hold. The extra clients must wait, and then be
//! served one by one as earlier clients leave; a client arriving after the
//! crowd must be served too. Then the whole conformance suite with the
//! defaults.
//!
//! Only built with `--features grade`, so a plain `cargo test --workspace`
//! does not grade the unsolved starter.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::time::Duration;

use echo_conformance::ServerProcess;

const BIN: &str = env!("CARGO_BIN_EXE_ex-pool-deadlock");
/// Two workers, one queue slot.
const WORKERS: usize = 2;
const QUEUE: usize = 1;
/// Clients at once: the workers' and the queue's, one more that the
/// acceptor holds while it waits for room, and one left in the listen
/// backlog.
const CLIENTS: usize = WORKERS + QUEUE + 2;
/// How long a client beyond the workers must go without an echo.
const NO_ECHO_FOR: Duration = Duration::from_millis(300);
/// How long a waiting client may take to be served once a worker is free.
const SERVED_WITHIN: Duration = Duration::from_secs(3);

fn connect(server: &ServerProcess) -> TcpStream {
    let stream = TcpStream::connect_timeout(&server.addr(), SERVED_WITHIN).expect("connect");
    stream
        .set_write_timeout(Some(SERVED_WITHIN))
        .expect("write timeout");
    stream
}

fn message(i: usize) -> Vec<u8> {
    format!("client {i} was here").into_bytes()
}

/// Reads exactly the echo of `msg` within `SERVED_WITHIN`.
fn expect_echo(stream: &mut TcpStream, msg: &[u8], why: &str) {
    stream
        .set_read_timeout(Some(SERVED_WITHIN))
        .expect("read timeout");
    let mut back = vec![0u8; msg.len()];
    if let Err(e) = stream.read_exact(&mut back) {
        panic!("{why}, but no echo came within {SERVED_WITHIN:?} ({e}): the server is stuck");
    }
    assert_eq!(back, msg, "the echo differs from what was sent");
}

/// Half-closes and expects the server's EOF within `SERVED_WITHIN`, with
/// nothing before it (every byte sent was already read back).
fn leave(mut stream: TcpStream, who: &str) {
    stream.shutdown(Shutdown::Write).expect("half-close");
    stream
        .set_read_timeout(Some(SERVED_WITHIN))
        .expect("read timeout");
    let mut rest = [0u8; 64];
    match stream.read(&mut rest) {
        Ok(0) => {}
        Ok(n) => panic!("{who}: {n} unexpected bytes after its echo"),
        Err(e) => panic!("{who} half-closed, but got no EOF within {SERVED_WITHIN:?}: {e}"),
    }
}

#[test]
fn a_full_pool_makes_clients_wait_then_serves_them_all() {
    let workers = WORKERS.to_string();
    let queue = QUEUE.to_string();
    let server = ServerProcess::spawn(Path::new(BIN), &["--workers", &workers, "--queue", &queue])
        .unwrap_or_else(|e| panic!("{e}"));

    // One at a time, so that the accept order, and with it the order in
    // which the queue serves them, is the order of `clients`.
    let mut clients: Vec<Option<TcpStream>> = Vec::new();
    for i in 0..CLIENTS {
        let mut c = connect(&server);
        c.write_all(&message(i)).expect("send");
        if i < WORKERS {
            expect_echo(
                &mut c,
                &message(i),
                &format!("client {i} has a free worker"),
            );
        }
        clients.push(Some(c));
    }

    // Every worker is held by a client that stays: the others wait.
    for (i, c) in clients.iter_mut().enumerate().skip(WORKERS) {
        let c = c.as_mut().expect("open");
        c.set_read_timeout(Some(NO_ECHO_FOR)).expect("read timeout");
        let mut buf = [0u8; 64];
        match c.read(&mut buf) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Ok(0) => panic!("client {i} was closed: a full pool must make it wait, not refuse it"),
            Ok(_) => panic!("client {i} was echoed while both workers were held by other clients"),
            Err(e) => panic!("client {i}'s connection failed instead of waiting: {e}"),
        }
    }

    // Client i leaving frees a worker, which serves client i + WORKERS:
    // the one at the head of the queue.
    for i in 0..CLIENTS - WORKERS {
        let gone = clients[i].take().expect("open");
        leave(gone, &format!("client {i}"));
        let next = i + WORKERS;
        expect_echo(
            clients[next].as_mut().expect("open"),
            &message(next),
            &format!("client {i} left, freeing a worker for client {next}"),
        );
    }
    for (i, c) in clients.into_iter().enumerate() {
        if let Some(c) = c {
            leave(c, &format!("client {i}"));
        }
    }

    // The crowd is gone: a newcomer is served at once.
    let mut late = connect(&server);
    late.write_all(b"late").expect("send");
    expect_echo(&mut late, b"late", "a client came after the crowd had left");
    leave(late, "the late client");

    let status = server.terminate().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "exit after SIGTERM: {status}");
}

#[test]
fn conforms_with_the_defaults() {
    echo_conformance::assert_conforms(Path::new(BIN), &[]);
}
