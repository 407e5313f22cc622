//! Black-box tests of `echo-fork-per-client`: the shared conformance suite
//! and fault suite, the command line, `--max-conns`, shutdown, and what is
//! this model's own: children are reaped (no zombies), `--max-conns` counts
//! live children, no child outlives the grace period or its parent, and no
//! child keeps the listener. The process tree is read from `/proc` through
//! `echo_conformance::tree`.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use echo_conformance::{ServerProcess, tree};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_echo-fork-per-client"))
}

/// Generous bound for anything the server does asynchronously (a child
/// exiting and being reaped, a signal being handled).
const SETTLE: Duration = Duration::from_secs(5);

/// Writes `msg` and reads it back on an open client.
fn round_trip(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, msg);
}

/// Polls `f` until it returns `Some`, for at most `limit`; panics with
/// `what` and the last value seen otherwise.
fn wait_for<T: std::fmt::Debug>(
    limit: Duration,
    what: &str,
    mut f: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not within {limit:?}; last seen: {last}")
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// The server's children (its tree minus itself).
fn children(server: &ServerProcess) -> Vec<u32> {
    tree::pids(server.pid()).into_iter().skip(1).collect()
}

/// Waits until the tree is exactly the server and `n` live children.
fn expect_children(server: &ServerProcess, n: u64, what: &str) -> tree::Counts {
    wait_for(SETTLE, what, || {
        let c = tree::counts(server.pid()).ok_or("the server is gone")?;
        if c.processes == n + 1 && c.zombies == 0 {
            Ok(c)
        } else {
            Err(format!("{c:?}"))
        }
    })
}

/// Whether a client's connection has ended: EOF or an error within
/// `SETTLE`, rather than a timeout.
fn ended(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(SETTLE)).unwrap();
    let mut byte = [0u8; 1];
    match s.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

#[test]
fn conforms() {
    echo_conformance::assert_conforms(bin(), &[]);
}

#[test]
fn survives_the_faults() {
    echo_conformance::assert_survives_faults(bin(), &[]);
}

#[test]
fn declares_no_limits() {
    let limits = echo_conformance::expected_limits(bin()).expect("--expected-limits");
    assert!(limits.is_empty(), "{limits:?}");
}

#[test]
fn rejects_bad_input() {
    echo_conformance::cli::assert_rejects_bad_input(bin());
}

#[test]
fn enforces_max_conns() {
    echo_conformance::limits::assert_max_conns_enforced(bin(), &[]);
}

#[test]
fn shuts_down_gracefully() {
    echo_conformance::limits::assert_graceful_shutdown(bin(), &[]);
}

/// Each client is served by a child of its own, and after many clients the
/// tree is back to the server alone: every child reaped (no zombie), and
/// no descriptor left behind in the parent (it closed its copy of each
/// client).
#[test]
fn leaves_no_zombies_after_many_connections() {
    let server = ServerProcess::spawn(bin(), &[]).expect("spawn");
    let mut open = server.client();
    round_trip(&mut open, b"who serves me?");
    let kids = children(&server);
    assert_eq!(kids.len(), 1, "one child per open client: {kids:?}");
    drop(open);
    // The baseline is taken once the serving loop surely runs (it opens
    // its SIGCHLD eventfd after the readiness line).
    let base = expect_children(&server, 0, "the first child exited and reaped");

    for i in 0..500u32 {
        let mut c = server.client();
        let msg = format!("client {i}\n");
        c.write_all(msg.as_bytes()).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        assert_eq!(back, msg.as_bytes(), "client {i}");
    }

    let after = expect_children(&server, 0, "all 500 children exited and reaped");
    assert!(
        after.fds <= base.fds,
        "the parent holds {} descriptors after 500 clients, {} before",
        after.fds,
        base.fds
    );
    assert!(
        !tree::alive(kids[0]),
        "the first client's child {} is still alive",
        kids[0]
    );
    let status = server.terminate().expect("terminate");
    assert!(status.success(), "exit status {status}");
}

/// `--max-conns 2` counts live children: two open clients make two
/// children; a third client is closed without a fork; once a client
/// leaves, its child is reaped and the freed slot serves a new client.
#[test]
fn max_conns_counts_live_children() {
    let server = ServerProcess::spawn(bin(), &["--max-conns", "2"]).expect("spawn");
    let mut a = server.client();
    round_trip(&mut a, b"a");
    let mut b = server.client();
    round_trip(&mut b, b"b");
    expect_children(&server, 2, "two clients, two children");

    let mut c = server.client();
    // The write may fail if the server already closed: either way, no echo.
    let _ = c.write_all(b"c");
    assert!(ended(&mut c), "a third client was not closed");
    let now = tree::counts(server.pid()).expect("server alive");
    assert_eq!(now.processes, 3, "a refused client got a child: {now:?}");

    drop(a);
    expect_children(&server, 1, "the first client's child reaped");
    let mut d = server.client();
    round_trip(&mut d, b"d");
    expect_children(&server, 2, "the freed slot serves a new client");
    round_trip(&mut b, b"b again");
    drop((b, d));
    let status = server.terminate().expect("terminate");
    assert!(status.success(), "exit status {status}");
}

/// After SIGTERM the open client is still served, but a child that does
/// not finish is stopped when the grace period ends: the server exits 0
/// and its child is gone with it, the client seeing its connection end.
#[test]
fn children_are_gone_after_sigterm_and_grace() {
    let mut server = ServerProcess::spawn(bin(), &[]).expect("spawn");
    let mut open = server.client();
    round_trip(&mut open, b"before");
    let kids = children(&server);
    assert_eq!(kids.len(), 1, "{kids:?}");

    server.sigterm().unwrap();
    round_trip(&mut open, b"after SIGTERM, within the grace period");
    assert!(
        server.wait_timeout(Duration::ZERO).is_none(),
        "the server exited while a client was still being served"
    );

    let limit = echo_protocol::GRACE_PERIOD + Duration::from_secs(3);
    let status = server
        .wait_timeout(limit)
        .unwrap_or_else(|| panic!("still running {limit:?} after SIGTERM"));
    assert!(status.success(), "exit status {status}");
    wait_for(SETTLE, "the child gone after the server exited", || {
        if tree::alive(kids[0]) {
            Err(format!("child {} alive", kids[0]))
        } else {
            Ok(())
        }
    });
    assert!(ended(&mut open), "the client's connection did not end");
}

/// SIGKILL to the parent alone (no handler runs, no grace period): the
/// children die with it (`PR_SET_PDEATHSIG`), so none is left serving.
#[test]
fn children_die_with_their_parent() {
    let server = ServerProcess::spawn(bin(), &[]).expect("spawn");
    let mut clients: Vec<TcpStream> = (0..3).map(|_| server.client()).collect();
    for c in &mut clients {
        round_trip(c, b"alive");
    }
    let kids = children(&server);
    assert_eq!(kids.len(), 3, "{kids:?}");

    // SAFETY: plain syscall on our own child's pid, which is not reaped yet
    // (ServerProcess reaps it on drop), so it names that process.
    let rc = unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());

    wait_for(SETTLE, "every child dead after its parent", || {
        let alive: Vec<u32> = kids.iter().copied().filter(|&p| tree::alive(p)).collect();
        if alive.is_empty() {
            Ok(())
        } else {
            Err(format!("still alive: {alive:?}"))
        }
    });
    for (i, c) in clients.iter_mut().enumerate() {
        assert!(ended(c), "client {i}'s connection did not end");
    }
}

/// The child closes its copy of the listener: once the parent stops
/// accepting, a new client is refused even while a child still serves an
/// open one (a child holding the listener would keep it listening, and
/// the new client would wait in the backlog instead).
#[test]
fn a_child_does_not_keep_the_listener() {
    let mut server = ServerProcess::spawn(bin(), &[]).expect("spawn");
    let addr: SocketAddr = server.addr();
    let mut open = server.client();
    round_trip(&mut open, b"held open");
    let kids = children(&server);
    assert_eq!(kids.len(), 1, "{kids:?}");
    assert_eq!(tree::listens_on(server.pid(), addr), Some(true));
    assert_eq!(
        tree::listens_on(kids[0], addr),
        Some(false),
        "child {} holds the listener",
        kids[0]
    );

    server.sigterm().unwrap();
    wait_for(
        SETTLE,
        "a new client refused after SIGTERM",
        || match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(()),
            Err(e) => Err(e.to_string()),
            Ok(_) => Err("connected".into()),
        },
    );
    assert!(tree::alive(kids[0]), "the child ended before its client");
    round_trip(&mut open, b"still served");
    open.shutdown(Shutdown::Write).unwrap();
    assert!(ended(&mut open));
    drop(open);
    let status = server
        .wait_timeout(Duration::from_secs(3))
        .expect("exit after the last client left");
    assert!(status.success(), "exit status {status}");
}
