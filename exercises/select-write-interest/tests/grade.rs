#![cfg(feature = "grade")]
//! Grading of `select-write-interest`: with a hundred clients connected and
//! silent, the server process must sleep (its CPU time, read from `/proc`,
//! barely moves over a second); and the whole suite must pass, whose
//! large and half-closed transfers need the write set whenever a socket
//! could not take an echo at once.
//!
//! Only built with `--features grade`, so a plain `cargo test --workspace`
//! does not grade the unsolved starter.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use echo_conformance::{ServerProcess, tree};

const BIN: &str = env!("CARGO_BIN_EXE_ex-select-write-interest");

/// Most of a core (as a fraction) the server may use while every client is
/// idle. A loop that sleeps in `select` uses well under 1 %; one that keeps
/// idle clients in the write set takes all the core it gets, a third of one
/// at least in a debug build on a busy 2-core machine.
const IDLE_CPU_LIMIT: f64 = 0.10;

#[test]
fn idle_clients_let_the_server_sleep() {
    let server = ServerProcess::spawn(Path::new(BIN), &[]).unwrap_or_else(|e| panic!("{e}"));
    // Each client is echoed once, so each has been through the whole
    // read-then-write path, and then says nothing more.
    let mut clients: Vec<TcpStream> = (0..100).map(|_| server.client()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let msg = format!("client {i}");
        c.write_all(msg.as_bytes()).expect("send");
        let mut back = vec![0; msg.len()];
        c.read_exact(&mut back)
            .unwrap_or_else(|e| panic!("client {i}: no echo: {e}"));
        assert_eq!(back, msg.as_bytes(), "client {i}");
    }
    let pid = server.pid();
    let (t0, c0) = (Instant::now(), tree::cpu_ns(pid).expect("server CPU"));
    // A measuring window, not a wait for something to happen.
    thread::sleep(Duration::from_secs(1));
    let (t1, c1) = (Instant::now(), tree::cpu_ns(pid).expect("server CPU"));
    let share = c1.saturating_sub(c0) as f64 / (t1 - t0).as_nanos() as f64;
    assert!(
        share < IDLE_CPU_LIMIT,
        "the server used {:.0} % of a core while 100 clients sat idle (limit {:.0} %): \
         select returns at once every round",
        share * 100.0,
        IDLE_CPU_LIMIT * 100.0
    );

    // Still serving: one of them talks again, and leaves.
    let c = &mut clients[0];
    c.write_all(b"again").expect("send");
    c.shutdown(Shutdown::Write).expect("half-close");
    let mut back = Vec::new();
    c.read_to_end(&mut back).expect("echo and EOF");
    assert_eq!(back, b"again");
    drop(clients);
    let status = server.terminate().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "exit after SIGTERM: {status}");
}

/// Every case, with the one limit `select` has by construction. A fix that
/// drops clients from the write set altogether strands the echo that did
/// not fit in a full socket: `half-close` and `slow-reader` fail, their
/// echo stopped a few MiB short.
#[test]
fn conforms() {
    echo_conformance::assert_conforms(Path::new(BIN), &[]);
}
