//! The limits of the server contract, checked against the running binary:
//! `--max-conns` turns extra clients away without hurting the others, and
//! SIGTERM stops new work while open connections finish.
//!
//! The fault suite's `max-conns` is the check behind the first, run on its own
//! server; `sigterm-mid-transfer` uses the same probe.
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

use crate::cases::{CaseResult, connect, is_timeout, round_trip};
use crate::{Failure, ServerProcess};

/// Pause between probes: long enough not to flood the server, short next to
/// the deadlines.
pub(crate) const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// What a one-byte probe connection saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
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
pub(crate) fn probe(addr: SocketAddr, wait: Duration) -> Probe {
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

pub(crate) fn remaining(deadline: Instant, cap: Duration) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .min(cap)
        .max(Duration::from_millis(1))
}

fn spawn(bin: &Path, args: &[&str]) -> ServerProcess {
    ServerProcess::spawn(bin, args).unwrap_or_else(|e| panic!("{e}"))
}

/// With `args` + `--max-conns 3`: 3 clients connect and each echoes; a 4th
/// client is turned away (refused, or closed with no echo, within 3 s); the
/// 3 still echo; after one of them closes, a new client is served within
/// 3 s. Panics with what went wrong.
pub fn assert_max_conns_enforced(bin: &Path, args: &[&str]) {
    let name = format!("{} --max-conns 3", bin.display());
    let mut full = args.to_vec();
    full.extend(["--max-conns", "3"]);
    let server = spawn(bin, &full);
    if let Err(e) = max_conns_enforced(server.addr(), 3) {
        panic!("{name}: {}", e.detail());
    }
}

/// The check behind [`assert_max_conns_enforced`] and the `max-conns` fault,
/// against a server started with `--max-conns n`. Not serving the `n`
/// (iterative) is a shortfall; serving the `n+1`th, or hurting the `n`
/// while turning it away, is breakage.
pub(crate) fn max_conns_enforced(addr: SocketAddr, n: usize) -> CaseResult {
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let who = format!("client {i} of {n}");
        let mut c = connect(addr, &who)?;
        round_trip(&mut c, format!("{who}\n").as_bytes(), &who)?;
        clients.push(c);
    }

    let extra = probe(addr, Duration::from_secs(3));
    match extra {
        Probe::Refused | Probe::Closed => {}
        Probe::Served => {
            return Err(Failure::Broken(format!(
                "with --max-conns {n} and {n} clients connected, for client {}, {extra} \
                 (expected: refused, or closed without an echo)",
                n + 1
            )));
        }
        Probe::Ignored => {
            return Err(Failure::Short(format!(
                "with --max-conns {n} and {n} clients connected, for client {}, {extra} within \
                 3 s (expected: turned away, not left waiting)",
                n + 1
            )));
        }
    }

    for (i, c) in clients.iter_mut().enumerate() {
        let who = format!("client {i} of {n}, after client {} was turned away", n + 1);
        round_trip(c, format!("{who}\n").as_bytes(), &who).map_err(Failure::Broken)?;
    }

    drop(clients.remove(0));
    let left = Instant::now();
    let deadline = left + Duration::from_secs(3);
    loop {
        let attempt = probe(addr, remaining(deadline, Duration::from_secs(1)));
        if attempt == Probe::Served {
            break;
        }
        if Instant::now() >= deadline {
            return Err(Failure::Short(format!(
                "3 s after one of {n} clients closed, a new client is still not served \
                 (last attempt: {attempt})"
            )));
        }
        thread::sleep(RETRY_PAUSE);
    }
    Ok(format!(
        "client {} turned away ({extra}); a new one served {:.0} ms after one of {n} left",
        n + 1,
        left.elapsed().as_secs_f64() * 1e3
    ))
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
