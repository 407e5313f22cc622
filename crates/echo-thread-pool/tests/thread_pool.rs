//! Black-box tests of `echo-thread-pool`: the shared conformance suite and
//! fault suite, the command line, `--max-conns`, shutdown, and what is the
//! pool's own: the ceiling of N workers plus Q queued, the full-queue
//! policy, a panicking worker, and the queue at shutdown.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::time::Duration;

use echo_conformance::{ServerProcess, run_suite};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_echo-thread-pool"))
}

/// How long a client that must *not* be served waits for an echo before
/// the test concludes it was not. A served client gets its echo in well
/// under a millisecond on loopback; a wrong verdict here could only be an
/// echo that should never come, so the wait bounds the test, not a race.
const NOT_SERVED_WAIT: Duration = Duration::from_millis(700);

#[test]
fn conforms() {
    echo_conformance::assert_conforms(bin(), &[]);
}

#[test]
fn survives_the_faults() {
    echo_conformance::assert_survives_faults(bin(), &[]);
}

/// The three cases that hold more clients open at once than the default
/// 64 workers and 64 queue slots, and nothing else.
#[test]
fn declares_the_crowd_cases_as_limits() {
    let limits = echo_conformance::expected_limits(bin()).expect("--expected-limits");
    assert_eq!(
        limits,
        ["concurrent-200", "idle-500", "beyond-fd-setsize"],
        "{limits:?}"
    );
}

/// The declared limit is the pool's size and nothing else: with 200
/// workers, `concurrent-200` passes, with no limit declared.
#[test]
fn the_ceiling_moves_with_workers() {
    let server = ServerProcess::spawn(bin(), &["--workers", "200"]).expect("spawn");
    let only = ["concurrent-200".to_string()];
    let report = run_suite(&server.target(), &[], Some(&only), &mut |o| {
        eprintln!("{o}")
    })
    .expect("the suite runs");
    assert!(report.ok(), "with --workers 200:\n{report}");
    let status = server.terminate().expect("terminate");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn rejects_bad_input() {
    echo_conformance::cli::assert_rejects_bad_input(bin());
}

/// The model's own flags: out of range or unknown values are usage errors
/// (exit 2, one `error:` line naming the flag), never a crash.
#[test]
fn rejects_bad_pool_flags() {
    for args in [
        &["--workers", "0"][..],
        &["--workers", "many"],
        &["--queue", "lots"],
        &["--workers", "100001"],
        &["--when-full", "maybe"],
    ] {
        echo_conformance::cli::assert_usage_error(bin(), args, &[args[0]]);
    }
}

#[test]
fn enforces_max_conns() {
    echo_conformance::limits::assert_max_conns_enforced(bin(), &[]);
}

#[test]
fn shuts_down_gracefully() {
    echo_conformance::limits::assert_graceful_shutdown(bin(), &[]);
}

// ---- the pool's own behaviour ---------------------------------------------

/// Writes `msg` and reads its echo.
fn round_trip(c: &mut TcpStream, msg: &[u8], who: &str) {
    c.write_all(msg)
        .unwrap_or_else(|e| panic!("{who}: write: {e}"));
    let mut echoed = vec![0u8; msg.len()];
    c.read_exact(&mut echoed)
        .unwrap_or_else(|e| panic!("{who}: no echo: {e}"));
    assert_eq!(echoed, msg, "{who}");
}

/// Writes `msg`, and asserts that no echo comes within [`NOT_SERVED_WAIT`]
/// and the connection is not closed either: the client is waiting.
fn assert_waiting(c: &mut TcpStream, msg: &[u8], who: &str) {
    c.write_all(msg)
        .unwrap_or_else(|e| panic!("{who}: write: {e}"));
    c.set_read_timeout(Some(NOT_SERVED_WAIT)).unwrap();
    let mut byte = [0u8; 1];
    match c.read(&mut byte) {
        Ok(0) => panic!("{who}: closed (expected: waiting for a worker)"),
        Ok(_) => panic!("{who}: served (expected: waiting for a worker)"),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Err(e) => panic!("{who}: {e} (expected: waiting for a worker)"),
    }
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
}

/// Reads the echo of `msg`, written earlier, within 5 s.
fn assert_echoed(c: &mut TcpStream, msg: &[u8], who: &str) {
    let mut echoed = vec![0u8; msg.len()];
    c.read_exact(&mut echoed)
        .unwrap_or_else(|e| panic!("{who}: no echo: {e}"));
    assert_eq!(echoed, msg, "{who}");
}

/// Asserts the server closes `c` (EOF or reset) without echoing.
fn assert_closed(c: &mut TcpStream, who: &str) {
    let mut buf = [0u8; 64];
    match c.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("{who}: echoed {n} bytes (expected: closed)"),
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset) => {}
        Err(e) => panic!("{who}: {e} (expected: closed)"),
    }
}

/// `--workers 2 --queue 1`, default policy (wait): clients 3 and 4 are
/// neither served nor closed while 1 and 2 hold the workers (3 in the
/// queue, 4 in the acceptor's hand); each is served, in order, as a worker
/// frees.
#[test]
fn a_full_pool_makes_clients_wait_until_a_worker_frees() {
    let server = ServerProcess::spawn(bin(), &["--workers", "2", "--queue", "1"]).expect("spawn");
    let mut one = server.client();
    let mut two = server.client();
    round_trip(&mut one, b"one", "client 1");
    round_trip(&mut two, b"two", "client 2");
    let mut three = server.client();
    let mut four = server.client();
    assert_waiting(&mut three, b"three", "client 3");
    assert_waiting(&mut four, b"four", "client 4");

    drop(one);
    assert_echoed(&mut three, b"three", "client 3, after client 1 left");
    // One worker freed, one waiting client served: 4 still waits.
    assert_waiting(&mut four, b"!", "client 4, after client 1 left");
    round_trip(&mut two, b"still", "client 2, still served");

    drop(two);
    assert_echoed(&mut four, b"four!", "client 4, after client 2 left");
    round_trip(&mut three, b"3", "client 3");
    round_trip(&mut four, b"4", "client 4");

    drop((three, four));
    let status = server.terminate().expect("terminate");
    assert!(status.success(), "exit status {status}");
}

/// The same with `--when-full refuse`: client 3 waits in the queue, client
/// 4 finds it full and is closed at once; 3 is served when a worker frees.
#[test]
fn a_full_pool_refuses_under_the_refuse_policy() {
    let server = ServerProcess::spawn(
        bin(),
        &["--workers", "2", "--queue", "1", "--when-full", "refuse"],
    )
    .expect("spawn");
    // One after the other, so that both workers are busy when client 3
    // comes: the refusal depends on busy workers, not on timing.
    let mut one = server.client();
    round_trip(&mut one, b"one", "client 1");
    let mut two = server.client();
    round_trip(&mut two, b"two", "client 2");
    let mut three = server.client();
    assert_waiting(&mut three, b"three", "client 3");
    let mut four = server.client();
    // Writing may already fail, if the close beat us to it.
    let _ = four.write_all(b"four");
    assert_closed(&mut four, "client 4, the queue being full");

    drop(one);
    assert_echoed(&mut three, b"three", "client 3, after client 1 left");
    // With a slot free again, a new client is queued, not refused.
    let mut five = server.client();
    assert_waiting(&mut five, b"five", "client 5");
    drop(two);
    assert_echoed(&mut five, b"five", "client 5, after client 2 left");

    drop((three, five));
    let status = server.terminate().expect("terminate");
    assert!(status.success(), "exit status {status}");
}

/// A worker that panics on a connection closes it and goes on: after more
/// panics than there are workers, the pool still serves N clients at once.
/// The panic is the hidden `--panic-on` trigger, a worker meeting a request
/// it cannot handle, as an `unwrap` in a parser would.
#[test]
fn panics_do_not_shrink_the_pool() {
    let server = ServerProcess::spawn(
        bin(),
        &["--workers", "2", "--queue", "0", "--panic-on", "PANIC"],
    )
    .expect("spawn");
    for i in 0..5 {
        let mut c = server.client();
        c.write_all(b"PANIC please").unwrap();
        assert_closed(&mut c, &format!("panicking client {i}"));
    }
    // Two clients at once, both served: both workers are alive. With one
    // worker left, the second would wait (queue 0) and `round_trip` would
    // time out; with none, the first would.
    let mut a = server.client();
    let mut b = server.client();
    round_trip(&mut a, b"a after the panics", "client a");
    round_trip(&mut b, b"b after the panics", "client b");
    // And no more than two: the pool did not grow either.
    let mut c = server.client();
    assert_waiting(&mut c, b"c", "client c, with a and b connected");
    drop(a);
    assert_echoed(&mut c, b"c", "client c, after a left");

    drop((b, c));
    let status = server.terminate().expect("terminate");
    assert!(status.success(), "exit status {status}");
}

/// On SIGTERM, a connection in a worker finishes; one still in the queue is
/// closed without an echo at once, not served (see the module header).
#[test]
fn shutdown_closes_queued_connections_and_finishes_served_ones() {
    let mut server =
        ServerProcess::spawn(bin(), &["--workers", "1", "--queue", "2"]).expect("spawn");
    let mut served = server.client();
    round_trip(&mut served, b"served", "served client");
    let mut queued = server.client();
    assert_waiting(&mut queued, b"queued", "queued client");

    server.sigterm().expect("SIGTERM");
    // Bounded by the client's 5 s read timeout, and well before the served
    // client leaves or the grace period ends.
    assert_closed(&mut queued, "queued client, after SIGTERM");
    round_trip(
        &mut served,
        b"after SIGTERM",
        "served client, after SIGTERM",
    );
    served.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    served.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    drop(served);
    match server.wait_timeout(Duration::from_secs(3)) {
        Some(status) => assert!(status.success(), "exit status {status}"),
        None => panic!("still running 3 s after its last client left, after SIGTERM"),
    }
}
