//! The limits of the server contract, checked against the running binary:
//! `--max-conns` turns extra clients away without hurting the others, and
//! SIGTERM stops new work while open connections finish.
//!
//! Both checks probe with a fresh connection that writes one byte and waits
//! for it: an echo means "served", EOF or `ECONNRESET` means "closed", a
//! timeout means "neither" (left in the listen backlog). Where the server
//! notices an event asynchronously (a client leaving, a signal), the probe is
//! retried until a deadline rather than preceded by a sleep.

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::ServerProcess;
use crate::cases::{connect, is_timeout, round_trip};

/// Pause between probes: long enough not to flood the server, short next to
/// the deadlines.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

#[derive(Debug, PartialEq, Eq)]
enum Probe {
    Refused,
    Closed,
    Served,
    Ignored,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Probe::Refused => "the connection was refused",
            Probe::Closed => "the connection was closed without an echo",
            Probe::Served => "the connection was served (its byte was echoed)",
            Probe::Ignored => "the connection was neither served nor closed",
        })
    }
}

/// Connects, writes one byte and waits up to `wait` for it.
fn probe(addr: SocketAddr, wait: Duration) -> Probe {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, wait) else {
        return Probe::Refused;
    };
    let _ = s.set_nodelay(true);
    if s.set_read_timeout(Some(wait)).is_err() || s.set_write_timeout(Some(wait)).is_err() {
        return Probe::Closed;
    }
    // A write can fail when the server already closed: that is an answer.
    if s.write_all(b"?").is_err() {
        return Probe::Closed;
    }
    let mut byte = [0u8; 1];
    loop {
        return match s.read(&mut byte) {
            Ok(0) => Probe::Closed,
            Ok(_) if byte[0] == b'?' => Probe::Served,
            Ok(_) => Probe::Closed,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => Probe::Ignored,
            Err(_) => Probe::Closed,
        };
    }
}

fn remaining(deadline: Instant, cap: Duration) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .min(cap)
        .max(Duration::from_millis(1))
}

fn spawn(bin: &Path, args: &[&str]) -> ServerProcess {
    ServerProcess::spawn(bin, args).unwrap_or_else(|e| panic!("{e}"))
}

/// With `args` + `--max-conns 3`: 3 clients connect and each echoes; a 4th
/// client's connection is closed by the server (EOF or `ECONNRESET` within
/// 3 s, no echo); the 3 still echo; after one of them closes, a new client is
/// served within 3 s.
pub fn assert_max_conns_enforced(bin: &Path, args: &[&str]) {
    let name = format!("{} --max-conns 3", bin.display());
    let mut full = args.to_vec();
    full.extend(["--max-conns", "3"]);
    let server = spawn(bin, &full);
    let addr = server.addr();

    let mut clients: Vec<TcpStream> = (0..3)
        .map(|i| {
            let who = format!("client {i} of 3");
            let mut c = connect(addr, &who).unwrap_or_else(|e| panic!("{name}: {e}"));
            round_trip(&mut c, format!("{who}\n").as_bytes(), &who)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            c
        })
        .collect();

    let fourth = probe(addr, Duration::from_secs(3));
    assert_eq!(
        fourth,
        Probe::Closed,
        "{name}: for a 4th client, {fourth} (expected: closed by the server within 3 s, no echo)"
    );

    for (i, c) in clients.iter_mut().enumerate() {
        let who = format!("client {i} of 3, after the 4th was turned away");
        round_trip(c, format!("{who}\n").as_bytes(), &who)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    drop(clients.remove(0));
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let attempt = probe(addr, remaining(deadline, Duration::from_secs(1)));
        if attempt == Probe::Served {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: 3 s after one of 3 clients closed, a new client is still not served \
             (last attempt: {attempt})"
        );
        thread::sleep(RETRY_PAUSE);
    }
}

/// A connected client echoes; SIGTERM the server; within 2 s new connections
/// are refused or closed without echo; the open client still echoes, then
/// closes; the server exits with status 0 within 3 s of that.
pub fn assert_graceful_shutdown(bin: &Path, args: &[&str]) {
    let name = bin.display().to_string();
    let mut server = spawn(bin, args);
    let addr = server.addr();
    let mut open = connect(addr, "open client").unwrap_or_else(|e| panic!("{name}: {e}"));
    round_trip(
        &mut open,
        b"before SIGTERM\n",
        "open client, before SIGTERM",
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));

    server.sigterm().unwrap_or_else(|e| panic!("{name}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let attempt = probe(addr, remaining(deadline, Duration::from_millis(500)));
        if matches!(attempt, Probe::Refused | Probe::Closed) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: 2 s after SIGTERM, a new client still connects and {attempt} \
             (expected: refused, or closed without an echo)"
        );
        thread::sleep(RETRY_PAUSE);
    }

    round_trip(&mut open, b"after SIGTERM\n", "open client, after SIGTERM")
        .unwrap_or_else(|e| panic!("{name}: an open connection must be allowed to finish: {e}"));
    drop(open);
    match server.wait_timeout(Duration::from_secs(3)) {
        Some(status) => assert!(
            status.success(),
            "{name}: exited with {status} after SIGTERM (expected 0)"
        ),
        None => panic!("{name}: still running 3 s after its last client closed, after SIGTERM"),
    }
}
