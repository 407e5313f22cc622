#![cfg(feature = "grade")]
//! Grading of `fork-reaper`, one test per leak, then the whole suite:
//!
//! - after many short clients the server has no zombie children (read from
//!   `/proc`: every process whose parent is the server, state `Z`);
//! - every client that half-closes gets its echo *and* EOF, and the
//!   parent's descriptor count does not grow with the clients served.
//!
//! Each test fails on one leak only, so the verdict says which is left.
//! Only built with `--features grade`, so a plain `cargo test --workspace`
//! does not grade the unsolved starter.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use echo_conformance::{ServerProcess, tree};

const BIN: &str = env!("CARGO_BIN_EXE_ex-fork-reaper");
/// Short clients per test.
const CLIENTS: usize = 100;
/// How long a client waits for its echo, or for EOF after it.
const PATIENCE: Duration = Duration::from_secs(3);
/// How long the server may take to reap a child or to let it exit.
const SETTLE: Duration = Duration::from_secs(5);

/// The server's children right now, as (live, zombies).
fn children(server: &ServerProcess) -> (usize, usize) {
    let kids = tree::members(server.pid()).into_iter().skip(1);
    kids.fold((0, 0), |(live, zombies), s| {
        if s.state == 'Z' {
            (live, zombies + 1)
        } else {
            (live + 1, zombies)
        }
    })
}

/// Polls `done` every 10 ms until it holds or `SETTLE` has passed; returns
/// whether it held.
fn settles(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + SETTLE;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn connect(server: &ServerProcess) -> TcpStream {
    let stream = TcpStream::connect_timeout(&server.addr(), PATIENCE).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream.set_write_timeout(Some(PATIENCE)).expect("timeout");
    stream
}

/// `CLIENTS` clients, one after another, each sending a line, reading it
/// back and closing: each child sees EOF and exits. Then, within `SETTLE`,
/// no zombie may be left among the server's children.
#[test]
fn no_zombies_after_many_short_clients() {
    let server = ServerProcess::spawn(Path::new(BIN), &[]).expect("spawn");
    let mut most = 0;
    for i in 0..CLIENTS {
        let mut c = connect(&server);
        let msg = format!("client {i}\n");
        c.write_all(msg.as_bytes()).expect("send");
        let mut back = vec![0u8; msg.len()];
        c.read_exact(&mut back)
            .unwrap_or_else(|e| panic!("client {i}: no echo within {PATIENCE:?}: {e}"));
        assert_eq!(back, msg.as_bytes(), "client {i}");
        drop(c);
        most = most.max(children(&server).1);
    }
    let reaped = settles(|| children(&server) == (0, 0));
    let (live, zombies) = children(&server);
    assert!(
        reaped,
        "{SETTLE:?} after {CLIENTS} clients left, the server still has {zombies} zombie \
         children (state Z: exited, never waited for) and {live} live ones; \
         most zombies seen at once while the clients ran: {most}"
    );
    let status = server.terminate().expect("terminate");
    assert!(status.success(), "exit status {status}");
}

/// `CLIENTS` clients, one after another, each sending a line, half-closing
/// and reading until EOF: the echo and then the end of the connection must
/// both arrive within `PATIENCE`. Afterwards the parent holds no more
/// descriptors than after the first client.
#[test]
fn every_client_gets_its_echo_then_eof() {
    let server = ServerProcess::spawn(Path::new(BIN), &[]).expect("spawn");
    let mut baseline = None;
    for i in 0..CLIENTS {
        let mut c = connect(&server);
        let msg = format!("client {i}\n");
        c.write_all(msg.as_bytes()).expect("send");
        c.shutdown(Shutdown::Write).expect("half-close");
        let mut back = Vec::new();
        match c.read_to_end(&mut back) {
            Ok(_) => assert_eq!(back, msg.as_bytes(), "client {i}"),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => panic!(
                "client {i}: got {:?} back but no EOF within {PATIENCE:?}: \
                 the connection stays open while any process still holds the socket",
                String::from_utf8_lossy(&back)
            ),
            Err(e) => panic!("client {i}: {e}"),
        }
        if baseline.is_none() {
            // Once the first child is gone, the tree's descriptors are the
            // parent's own.
            assert!(
                settles(|| children(&server).0 == 0),
                "the first child did not exit"
            );
            baseline = tree::counts(server.pid()).map(|c| c.fds);
        }
    }
    assert!(
        settles(|| children(&server).0 == 0),
        "children still running {SETTLE:?} after their clients left"
    );
    let before = baseline.expect("the server is gone");
    let after = tree::counts(server.pid()).expect("the server is gone").fds;
    assert!(
        after <= before,
        "the parent holds {after} descriptors after {CLIENTS} clients, {before} after the first: \
         one per client it served"
    );
    let status = server.terminate().expect("terminate");
    assert!(status.success(), "exit status {status}");
}

/// The whole conformance suite: a correct fork-per-client server meets
/// every case.
#[test]
fn conforms() {
    echo_conformance::assert_conforms(Path::new(BIN), &[]);
}
