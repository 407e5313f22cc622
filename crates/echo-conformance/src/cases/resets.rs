//! Clients that vanish: resets at every stage of a connection's life, and
//! thousands of connections whose endings must leave nothing behind.
//!
//! Syscalls: `setsockopt(SO_LINGER, 0)` then `close(2)` (the kernel sends
//! RST and discards unsent data), `shutdown(2)`, and `/proc` through
//! [`crate::tree`] for the server's descriptors, threads and zombie
//! children. Trade-off: a leak is seen only as counts that do not return to
//! their baseline within a bounded wait, so a server that frees lazily
//! after more than that wait looks leaky; the wait ([`SETTLE`]) is generous
//! for that reason.

use std::io::Write;
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::client::{
    ECHO_WAIT, Feed, FeedPlan, IO_TIMEOUT, KIB, MIB, Pattern, Rng, connect, connect_small_rcvbuf,
    expect_echo, expect_eof, mib, pseudo_random, reset, round_trip, round_trip_within,
};
use super::{CaseResult, echo_failure};
use crate::{Failure, Target, tree};

pub(crate) fn reset_isolation(addr: SocketAddr) -> CaseResult {
    let mut a = connect(addr, "client A")?;
    round_trip(&mut a, b"A: hello\n", "client A")?;
    let mut b = connect(addr, "client B")?;
    // B needs the server while A is connected: a one-at-a-time server
    // fails here, after ECHO_WAIT rather than the full I/O timeout.
    round_trip_within(&mut b, b"B: hello\n", ECHO_WAIT, "client B")?;
    b.write_all(&pseudo_random(64 * KIB, 0xb))
        .map_err(|e| format!("client B: writing 64 KiB failed: {e}"))?;
    // The server's next read or write on B fails with ECONNRESET or EPIPE,
    // and that must cost B's connection only.
    reset(b, "client B")?;
    for i in 0..20 {
        let msg = format!("A: {i:02}\n");
        round_trip(
            &mut a,
            msg.as_bytes(),
            &format!("client A, round trip {i} after B's reset"),
        )?;
    }
    let mut c = connect(addr, "client C (after B's reset)")?;
    round_trip(&mut c, b"C: hello\n", "client C (after B's reset)")?;
    Ok(String::new())
}

/// `reset-pending`: [`RESET_PENDING_CLIENTS`] clients in turn, each with a
/// small receive buffer, offers up to [`RESET_PENDING_OFFER`] without reading until its
/// writes stall (the server is then blocked writing to it, or holds output
/// for it), and resets. The server's writes to it fail (`ECONNRESET`, then
/// `EPIPE`, which raises `SIGPIPE` in a process that has not ignored it);
/// after each reset the server must still be alive and serve a new client.
pub(crate) fn reset_pending(target: &Target) -> CaseResult {
    let mut sent = Vec::new();
    for i in 0..RESET_PENDING_CLIENTS {
        let who = format!("resetting client {i}");
        let s = connect_small_rcvbuf(target.addr, 16 * KIB, &who)?;
        let feed = Feed::start(
            &s,
            FeedPlan {
                pattern: Pattern(0x4e5e7 + i as u64),
                limit: RESET_PENDING_OFFER,
                give_up_after: Some(Duration::from_millis(300)),
                deadline: Instant::now() + Duration::from_secs(20),
                then_shutdown: false,
            },
            &who,
        )?;
        while !feed.is_finished() {
            thread::sleep(Duration::from_millis(5));
        }
        let end = feed.stop()?;
        sent.push(end.written);
        reset(s, &who)?;
        check_alive(target, &format!("after {who} reset with output pending"))?;
        let fresh = format!("fresh client after {who}");
        let mut c = connect(target.addr, &fresh)?;
        round_trip(&mut c, format!("{fresh}\n").as_bytes(), &fresh)?;
        check_alive(target, &format!("after {who} reset with output pending"))?;
    }
    let sent: Vec<String> = sent.iter().map(|&b| mib(b as u64)).collect();
    Ok(format!(
        "{RESET_PENDING_CLIENTS} resets after sending {} unread; served after each",
        sent.join(", ")
    ))
}

/// What each client of `reset-pending` offers at most: more than loopback's
/// socket buffers usually grow to (autotuning allows up to 4 MiB sending and
/// 32 MiB receiving here, `net.ipv4.tcp_wmem`/`tcp_rmem`) plus a server's
/// own output cap, so that the writes stall and the server
/// is caught with output pending when the reset arrives.
pub const RESET_PENDING_OFFER: usize = 64 * MIB;

/// Clients of `reset-pending`: the first reset kills a server that dies of
/// it; the later ones catch a server that survives one failed write but
/// not its aftermath (a corrupted table, a stuck loop).
const RESET_PENDING_CLIENTS: usize = 3;

/// `reset-before-accept`: 200 connections, each reset the moment it
/// is established, most of them while still in the listen queue; then a
/// normal client must be served. Linux hands such a connection to
/// `accept(2)` anyway, already dead: `getpeername(2)` fails with
/// `ENOTCONN`, the first `read(2)` with `ECONNRESET`. A server that
/// unwraps either dies here.
pub(crate) fn reset_before_accept(target: &Target) -> CaseResult {
    const BURST: usize = 200;
    for i in 0..BURST {
        let s = connect(target.addr, &format!("resetting connection {i}"))?;
        reset(s, &format!("resetting connection {i}"))?;
    }
    let who = format!("client after {BURST} resets");
    let mut c = connect(target.addr, &who)?;
    round_trip(&mut c, b"after the resets\n", &who)?;
    check_alive(
        target,
        &format!("after {BURST} connections reset before accept"),
    )?;
    Ok(String::new())
}

/// How a `churn` connection ends.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// A round trip, then `shutdown(SHUT_WR)`, EOF, close.
    Normal,
    /// A round trip, then 4 KiB more unread, then RST.
    Reset,
    /// Write, `shutdown(SHUT_WR)` at once, then read the echo and EOF.
    HalfClose,
    /// Connect and close without a byte.
    Silent,
}

/// `churn`: [`CHURN`] connections from [`CHURN_WORKERS`] threads, each
/// ending one of four ways in a shuffled but seeded order. With a pid, the
/// server tree's descriptors, threads and zombie children are counted
/// before, and must return to that baseline (within [`FD_SLACK`] and
/// [`THREAD_SLACK`]; no zombie beyond it) within [`SETTLE`] after.
pub(crate) fn churn(target: &Target) -> CaseResult {
    let baseline = match target.pid {
        Some(pid) => Some((
            pid,
            tree::counts(pid).ok_or_else(|| {
                Failure::Broken(format!("server pid {pid} is gone before churn started"))
            })?,
        )),
        None => None,
    };
    let mut rng = Rng::new(0xc4_u64 << 32 | 0x0e);
    let endings: Arc<Vec<Ending>> = Arc::new(
        (0..CHURN)
            .map(|_| match rng.range(0, 3) {
                0 => Ending::Normal,
                1 => Ending::Reset,
                2 => Ending::HalfClose,
                _ => Ending::Silent,
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(60);
    let started = Instant::now();
    let workers: Vec<_> = (0..CHURN_WORKERS)
        .map(|w| {
            let (endings, next, addr) = (endings.clone(), next.clone(), target.addr);
            thread::Builder::new().name(format!("churn-{w}")).spawn(
                move || -> Result<(), Failure> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= endings.len() {
                            return Ok(());
                        }
                        if Instant::now() >= deadline {
                            return Err(Failure::Short(format!(
                                "connection {i}: the case's 60 s budget ran out"
                            )));
                        }
                        churn_one(addr, i, endings[i])?;
                    }
                },
            )
        })
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot start a churn thread: {e}"))?;
    let mut worst: Option<Failure> = None;
    for h in workers {
        let r = h
            .join()
            .unwrap_or_else(|_| Err(Failure::Broken("a churn thread panicked".into())));
        if let Err(e) = r {
            match (&worst, &e) {
                (None, _) | (Some(Failure::Short(_)), Failure::Broken(_)) => worst = Some(e),
                _ => {}
            }
        }
    }
    // Stop the other workers' work from being mistaken for a leak: on
    // failure, report the failure, not the counts.
    if let Some(e) = worst {
        return Err(e);
    }
    let rate = CHURN as f64 / started.elapsed().as_secs_f64();
    let Some((pid, base)) = baseline else {
        return Ok(format!(
            "{CHURN} connections, {rate:.0}/s; leaks not checked (no pid)"
        ));
    };
    let settle_deadline = Instant::now() + SETTLE;
    loop {
        let now = tree::counts(pid).ok_or_else(|| {
            Failure::Broken(format!("server pid {pid} {}", tree::describe_end(pid)))
        })?;
        let leaks = leaks(base, now);
        if leaks.is_empty() {
            return Ok(format!(
                "{CHURN} connections, {rate:.0}/s; back to baseline: {} fds, {} threads, {} zombies",
                now.fds, now.threads, now.zombies
            ));
        }
        if Instant::now() >= settle_deadline {
            return Err(Failure::Broken(format!(
                "{} s after {CHURN} connections closed, the server tree still holds {} \
                 (baseline {} fds, {} threads, {} zombies)",
                SETTLE.as_secs(),
                leaks.join(", "),
                base.fds,
                base.threads,
                base.zombies
            )));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Connections `churn` makes: thousands, so that a leak of one descriptor,
/// thread or child per connection stands far above any slack.
pub const CHURN: usize = 3000;
/// Client threads of `churn`: a few, so connections overlap (as real ones
/// do) without the case becoming a concurrency test; a one-at-a-time
/// server still gets through, each client just waits its turn.
pub const CHURN_WORKERS: usize = 4;
/// Descriptors the tree may hold above its baseline after `churn`: a
/// server may keep a few lazily (a spare descriptor for `EMFILE`, an
/// eventfd, a log file opened on first use). A leak of one per
/// connection is thousands.
pub const FD_SLACK: u64 = 8;
/// Threads above baseline after `churn`: a pool may keep a couple of
/// workers it spawned under load.
pub const THREAD_SLACK: u64 = 4;
/// How long `churn` waits for the counts to come back: threads of a
/// thread-per-client server finish, forked children exit and are reaped.
pub const SETTLE: Duration = Duration::from_secs(5);

/// What is above the baseline beyond the slack, one phrase each.
fn leaks(base: tree::Counts, now: tree::Counts) -> Vec<String> {
    let mut out = Vec::new();
    if now.fds > base.fds + FD_SLACK {
        out.push(format!("{} more open descriptors", now.fds - base.fds));
    }
    if now.threads > base.threads + THREAD_SLACK {
        out.push(format!("{} more threads", now.threads - base.threads));
    }
    if now.zombies > base.zombies {
        out.push(format!(
            "{} unreaped zombie children",
            now.zombies - base.zombies
        ));
    }
    out
}

fn churn_one(addr: SocketAddr, i: usize, ending: Ending) -> Result<(), Failure> {
    let who = format!("connection {i} ({ending:?})");
    let mut s = connect(addr, &who)?;
    let msg = format!("churn {i:05}\n");
    let msg = msg.as_bytes();
    let deadline = Instant::now() + IO_TIMEOUT;
    match ending {
        Ending::Normal => {
            s.write_all(msg)
                .map_err(|e| format!("{who}: write failed: {e}"))?;
            expect_echo(&mut s, msg, deadline).map_err(|e| echo_failure(&e, &who))?;
            s.shutdown(Shutdown::Write)
                .map_err(|e| format!("{who}: shutdown failed: {e}"))?;
            expect_eof(&mut s, msg.len(), &who)?;
        }
        Ending::Reset => {
            s.write_all(msg)
                .map_err(|e| format!("{who}: write failed: {e}"))?;
            expect_echo(&mut s, msg, deadline).map_err(|e| echo_failure(&e, &who))?;
            s.write_all(&pseudo_random(4 * KIB, i as u64))
                .map_err(|e| format!("{who}: write failed: {e}"))?;
            reset(s, &who)?;
        }
        Ending::HalfClose => {
            s.write_all(msg)
                .map_err(|e| format!("{who}: write failed: {e}"))?;
            s.shutdown(Shutdown::Write)
                .map_err(|e| format!("{who}: shutdown failed: {e}"))?;
            expect_echo(&mut s, msg, deadline).map_err(|e| echo_failure(&e, &who))?;
            expect_eof(&mut s, msg.len(), &who)?;
        }
        Ending::Silent => drop(s),
    }
    Ok(())
}

/// `Broken` if the server process is gone, naming how it ended.
pub(crate) fn check_alive(target: &Target, when: &str) -> Result<(), Failure> {
    match target.pid {
        Some(pid) if !tree::alive(pid) => Err(Failure::Broken(format!(
            "{when}: server pid {pid} {}",
            tree::describe_end(pid)
        ))),
        _ => Ok(()),
    }
}
