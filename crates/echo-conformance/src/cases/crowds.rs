//! Many connections at once: hundreds held open, then more than a
//! `select(2)` server can watch.
//!
//! Syscalls: `connect(2)` by the hundred (the listen backlog absorbs them
//! whether or not the server accepts yet), one-byte `write(2)`/`read(2)`,
//! and the server's CPU clock (`clock_gettime` on
//! `clock_getcpuclockid(pid)`, through [`crate::tree::cpu_ns`]) to tell an
//! idle server from a spinning one. Trade-off: every client is a
//! descriptor of this process too, so the harness raises its own
//! `RLIMIT_NOFILE`; and "spinning" is judged over one second of idleness,
//! enough to see a busy loop, too short to see a slow leak of CPU.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::client::{
    ECHO_WAIT, IO_TIMEOUT, connect, expect_echo, expect_echo_idle, is_timeout, round_up, secs,
};
use super::resets::check_alive;
use super::{CaseResult, echo_failure};
use crate::{Failure, Target, tree};

pub(crate) fn concurrent(addr: SocketAddr) -> CaseResult {
    const CLIENTS: usize = 200;
    const ROUNDS: usize = 5;
    let (mut clients, connecting) = connect_many(addr, CLIENTS)?;
    // The budget starts once everyone is connected: slow connects are the
    // listen backlog's business (reported below), not the echo's.
    let deadline = Instant::now() + Duration::from_secs(30);
    // Every client writes before any reads, so the server must hold all 200
    // conversations at once.
    for round in 0..ROUNDS {
        let message = |id: usize| format!("client {id:03} round {round}\n");
        for (id, c) in clients.iter_mut().enumerate() {
            c.write_all(message(id).as_bytes())
                .map_err(|e| format!("client {id}, round {round}: write failed: {e}"))?;
        }
        for (id, c) in clients.iter_mut().enumerate() {
            expect_echo_idle(c, message(id).as_bytes(), deadline, ECHO_WAIT)
                .map_err(|e| echo_failure(&e, &format!("client {id}, round {round}")))?;
        }
    }
    Ok(connecting)
}

/// Opens `count` connections one after the other. Returns them and, when
/// connecting was slow, a note saying so: a connect that takes a second or
/// more is a SYN the server's listen queue had no room for, retried by the
/// kernel after 1 s (then 3 s, 7 s...). That is the server's backlog
/// (socat's default is 5), not a failure of the echo.
fn connect_many(addr: SocketAddr, count: usize) -> Result<(Vec<TcpStream>, String), String> {
    let started = Instant::now();
    let mut slow = 0;
    let mut clients = Vec::with_capacity(count);
    for id in 0..count {
        let t = Instant::now();
        clients.push(connect(addr, &format!("client {id}"))?);
        if t.elapsed() >= Duration::from_millis(900) {
            slow += 1;
        }
    }
    let note = if slow > 0 {
        format!(
            "connecting took {}: {slow} of {count} connects waited for a SYN retry \
             (listen backlog too short?)",
            secs(round_up(started.elapsed()))
        )
    } else {
        String::new()
    };
    Ok((clients, note))
}

pub(crate) fn idle(addr: SocketAddr) -> CaseResult {
    const CLIENTS: usize = 500;
    let (mut clients, connecting) = connect_many(addr, CLIENTS)?;
    // The point of the case: connections that say nothing for a while must
    // neither be dropped nor cost the server its attention afterwards. The
    // 2 s are the scenario (longer than a 1 s idle timeout), not a wait for
    // something to happen.
    thread::sleep(Duration::from_secs(2));
    let deadline = Instant::now() + IO_TIMEOUT;
    let byte = |id: usize| [(id % 251) as u8];
    for (id, c) in clients.iter_mut().enumerate() {
        c.write_all(&byte(id))
            .map_err(|e| format!("client {id}, after 2 s idle: write failed: {e}"))?;
    }
    for (id, c) in clients.iter_mut().enumerate() {
        expect_echo_idle(c, &byte(id), deadline, ECHO_WAIT)
            .map_err(|e| echo_failure(&e, &format!("client {id}, after 2 s idle")))?;
    }
    Ok(connecting)
}

/// Connections `beyond-fd-setsize` holds: past `FD_SETSIZE` (1024), the
/// most descriptors an `fd_set` can name, by enough that a server's own
/// few descriptors cannot hide the crossing.
pub const BEYOND_FD_SETSIZE: usize = 1100;

/// CPU, as a fraction of one core, that the server tree may use while
/// every connection of `beyond-fd-setsize` sits idle. An idle server
/// sleeps in `epoll_wait`/`select`/`read` and uses next to nothing; a
/// server that spins (a readiness loop that keeps reporting a descriptor
/// it cannot handle, a busy retry of `accept`) uses a whole core. Half a
/// core sits far from both, so a noisy 2-core machine does not flip it.
pub const SPIN_LIMIT: f64 = 0.5;

/// `beyond-fd-setsize`: hold [`BEYOND_FD_SETSIZE`] connections, each makes
/// one round trip (all write, then all read); a client refused or unserved
/// is a shortfall a design may declare. With a pid, the server tree's CPU
/// over 1 s of idleness must stay under [`SPIN_LIMIT`] of a core. Then all
/// close, and a fresh client must be served: a server that crashed or
/// stopped serving is broken, whatever it declared.
pub(crate) fn beyond_fd_setsize(target: &Target) -> CaseResult {
    const FIRST_WAIT: Duration = Duration::from_secs(3);
    let started = Instant::now();
    let mut clients: Vec<Option<TcpStream>> = Vec::with_capacity(BEYOND_FD_SETSIZE);
    let mut refused = 0;
    let mut queue_full: Option<String> = None;
    for id in 0..BEYOND_FD_SETSIZE {
        // Once one connect failed (the listen queue is full and the SYN
        // went unanswered, or nobody listens), the next ones would fail the
        // same way, each after a 5 s connect timeout: count them refused.
        if queue_full.is_some() {
            refused += 1;
            clients.push(None);
            continue;
        }
        let c = match connect(target.addr, &format!("client {id}")) {
            Ok(c) => Some(c),
            Err(e) => {
                queue_full = Some(e);
                None
            }
        };
        let c = c.and_then(|mut c| c.write_all(&[byte(id)]).ok().map(|()| c));
        if c.is_none() {
            refused += 1;
        }
        clients.push(c);
    }
    let mut served = 0;
    let mut unserved = 0;
    let mut first_short: Option<String> = queue_full;
    // All bytes were written before the first read: once one client waited
    // FIRST_WAIT in vain, every later one has waited at least as long, so
    // they get a glance each (a non-blocking read), not 3 s each.
    let mut wait = Some(FIRST_WAIT);
    for (id, slot) in clients.iter_mut().enumerate() {
        let Some(c) = slot else { continue };
        match read_one(c, byte(id), wait) {
            Ok(()) => served += 1,
            Err(Reply::Wrong(got)) => {
                return Err(Failure::Broken(format!(
                    "client {id}: expected byte {:#04x}, got {got:#04x}",
                    byte(id)
                )));
            }
            Err(Reply::Nothing) => {
                unserved += 1;
                wait = None;
                first_short.get_or_insert_with(|| {
                    format!("client {id}: no echo within {}", secs(FIRST_WAIT))
                });
            }
            Err(Reply::Closed(how)) => {
                refused += 1;
                first_short.get_or_insert_with(|| format!("client {id}: {how}"));
                *slot = None;
            }
        }
    }
    let held = clients.iter().flatten().count();

    let cpu = match target.pid {
        Some(pid) => Some(idle_cpu(pid, Duration::from_secs(1))?),
        None => None,
    };
    if let Some(share) = cpu.filter(|&c| c > SPIN_LIMIT) {
        return Err(Failure::Broken(format!(
            "the server tree used {:.0} % of a core while {held} connections sat idle \
             (limit {:.0} %): it spins",
            share * 100.0,
            SPIN_LIMIT * 100.0
        )));
    }
    drop(clients);
    check_alive(target, &format!("holding {BEYOND_FD_SETSIZE} connections"))?;
    let who = format!("fresh client after {BEYOND_FD_SETSIZE} connections closed");
    let mut fresh = connect(target.addr, &who)
        .map_err(|e| Failure::Broken(format!("{e}: the server stopped serving")))?;
    if let Err(e) = expect_fresh(&mut fresh) {
        return Err(Failure::Broken(format!(
            "{who}: {e}: the server stopped serving"
        )));
    }
    let cpu_note = match cpu {
        Some(c) => format!("idle CPU {:.0} % of a core", c * 100.0),
        None => "CPU not checked (no pid)".to_string(),
    };
    if served < BEYOND_FD_SETSIZE {
        return Err(Failure::Short(format!(
            "{served} of {BEYOND_FD_SETSIZE} served, {refused} refused, {unserved} unserved \
             (first: {}); {cpu_note}; served normally once they closed",
            first_short.unwrap_or_default()
        )));
    }
    Ok(format!(
        "{BEYOND_FD_SETSIZE} held and served in {}; {cpu_note}",
        secs(round_up(started.elapsed()))
    ))
}

fn byte(id: usize) -> u8 {
    (id % 251) as u8
}

enum Reply {
    Wrong(u8),
    Nothing,
    Closed(String),
}

/// Reads the one echoed byte, waiting up to `wait`; `None`: do not wait.
fn read_one(c: &mut TcpStream, want: u8, wait: Option<Duration>) -> Result<(), Reply> {
    let set = match wait {
        Some(w) => c.set_read_timeout(Some(w)),
        None => c.set_nonblocking(true),
    };
    set.map_err(|e| Reply::Closed(format!("cannot set up the read: {e}")))?;
    let mut b = [0u8; 1];
    loop {
        return match c.read(&mut b) {
            Ok(0) => Err(Reply::Closed("closed by the server before any echo".into())),
            Ok(_) if b[0] == want => Ok(()),
            Ok(_) => Err(Reply::Wrong(b[0])),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => Err(Reply::Nothing),
            Err(e) => Err(Reply::Closed(format!("read failed: {e}"))),
        };
    }
}

fn expect_fresh(c: &mut TcpStream) -> Result<(), String> {
    let msg = b"after the crowd\n";
    c.write_all(msg).map_err(|e| format!("write failed: {e}"))?;
    // A one-at-a-time server first drains the closed connections waiting in
    // its backlog: twice the usual bound.
    expect_echo(c, msg, Instant::now() + 2 * IO_TIMEOUT).map_err(|e| e.to_string())
}

/// The server tree's CPU over `window` of wall time, as a fraction of one
/// core. The window is the measurement, not a wait for an event.
fn idle_cpu(pid: u32, window: Duration) -> Result<f64, Failure> {
    let gone = || Failure::Broken(format!("server pid {pid} {}", tree::describe_end(pid)));
    let (t0, c0) = (Instant::now(), tree::cpu_ns(pid).ok_or_else(gone)?);
    thread::sleep(window);
    let (t1, c1) = (Instant::now(), tree::cpu_ns(pid).ok_or_else(gone)?);
    Ok(c1.saturating_sub(c0) as f64 / (t1 - t0).as_nanos() as f64)
}
