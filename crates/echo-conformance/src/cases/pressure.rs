//! Back-pressure: clients that write more than they read, or read late.
//!
//! Syscalls: `setsockopt(SO_RCVBUF)` before `connect(2)` (a small receive
//! window keeps the return path congested, so the server's writes block or
//! return `EAGAIN` early), `write(2)` with a short `SO_SNDTIMEO` to notice
//! a stall, `shutdown(SHUT_WR)`, and `/proc` (through [`crate::tree`]) for
//! the server's memory. Trade-off: "the server stopped reading from me" can
//! only be seen as "my writes made no progress for a while", so these cases
//! wait out a stall window (tens of milliseconds to 2 s); a shorter window
//! would mistake a busy server for a blocked one.

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::client::{
    Feed, FeedPlan, IO_TIMEOUT, KIB, MIB, Pattern, Rng, connect, connect_small_rcvbuf, expect_echo,
    expect_eof, expect_pattern, mib, secs,
};
use super::{CaseResult, echo_failure};
use crate::{Failure, SLOW_READER_PSS_LIMIT, Target, tree};

/// The client receive buffer of the cases that want the return path
/// congested. Linux doubles the value and keeps a floor, so the window is a
/// few tens of KiB: far less than what the client sends.
const SMALL_RCVBUF: usize = 16 * KIB;

/// `half-close`: conversations of growing size, [`HALF_CLOSE_STEP`] to
/// [`HALF_CLOSE_MAX`] in steps of [`HALF_CLOSE_STEP`], one after the other.
/// In each, the client writes everything and half-closes
/// (`shutdown(SHUT_WR)`) without reading; it starts reading only once its
/// writer is done (and [`HALF_CLOSE_SETTLE`] has passed) or has stalled.
/// Every byte must come back, then EOF.
///
/// Why a sweep of sizes, and not one big write: the bug this case is for
/// is a non-blocking server that closes as soon as it reads EOF, throwing
/// away output it still holds in user space. That output exists only once
/// the server's kernel send buffer is full (loopback autotunes it to about
/// 4 MiB), and the server sees the EOF only while its own queue is below
/// its cap, so the bug shows when the size lands between "fills the send
/// buffer" and "fills the send buffer and the queue". Neither boundary is
/// known to the client (they are the server's), and a client that reads
/// while the server works moves them: a single 8 MiB conversation passed
/// such a server every time. Stepping the size by no more than a typical
/// output cap lands one conversation in that window for any cap of at
/// least [`HALF_CLOSE_STEP`]. A blocking server passes: when a
/// conversation is larger than what the buffers hold, its `write` blocks,
/// the client's writer stalls, and reading starts on that stall, so there
/// is no deadlock.
pub(crate) fn half_close(addr: SocketAddr) -> CaseResult {
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut stalled = 0;
    let mut size = HALF_CLOSE_STEP;
    let mut conversations = 0;
    while size <= HALF_CLOSE_MAX {
        if half_close_one(addr, size, deadline)? {
            stalled += 1;
        }
        conversations += 1;
        size += HALF_CLOSE_STEP;
    }
    Ok(format!(
        "{conversations} conversations of {} to {} each came back whole, then EOF \
         ({stalled} needed reading before the writer was done)",
        mib(HALF_CLOSE_STEP as u64),
        mib(HALF_CLOSE_MAX as u64)
    ))
}

/// Step and smallest size of `half-close`'s conversations: at most the
/// output cap of the servers it must catch (the test server's is 256 KiB;
/// echo-epoll's 1 MiB).
const HALF_CLOSE_STEP: usize = 192 * KIB;

/// Largest conversation of `half-close`: past loopback's default buffers
/// (up to 4 MiB of send buffer on each side), so the largest ones make
/// even a generous server hold output of its own.
const HALF_CLOSE_MAX: usize = 8 * MIB;

/// How long `half-close` lets the server work after the client's writer is
/// done, before it reads: the server reads on until its buffers are full
/// or it meets the EOF, which takes it microseconds. The pause shapes the
/// traffic; no verdict depends on its length.
const HALF_CLOSE_SETTLE: Duration = Duration::from_millis(10);

/// One conversation of `half-close`; `Ok(true)` if reading had to start
/// before the writer was done.
fn half_close_one(addr: SocketAddr, size: usize, deadline: Instant) -> Result<bool, Failure> {
    const STALL: Duration = Duration::from_millis(100);
    let who = format!("client sending {size} bytes");
    let pattern = Pattern(0x0dd_ba11 ^ size as u64);
    let mut s = connect_small_rcvbuf(addr, SMALL_RCVBUF, &who)?;
    let feed = Feed::start(
        &s,
        FeedPlan {
            pattern,
            limit: size,
            give_up_after: None,
            deadline,
            then_shutdown: true,
        },
        &who,
    )?;
    // Wait (bounded) for the writer to finish or stall.
    while !feed.is_finished() && feed.stalled_for() < STALL {
        if Instant::now() >= deadline {
            return Err(Failure::Short(format!(
                "{who}: the writer neither finished nor stalled within the case's budget \
                 ({} of {size} written)",
                feed.written(),
            )));
        }
        thread::sleep(Duration::from_millis(2));
    }
    let stalled = !feed.is_finished();
    if !stalled {
        thread::sleep(HALF_CLOSE_SETTLE);
    }
    expect_pattern(&mut s, pattern, 0, size, deadline, IO_TIMEOUT)
        .map_err(|e| echo_failure(&e, &who))?;
    let end = feed.stop()?;
    if !end.complete {
        return Err(Failure::Short(format!(
            "{who}: the writer stopped after {} of {size} bytes",
            end.written
        )));
    }
    expect_eof(&mut s, size, &who)?;
    Ok(stalled)
}

/// `slow-reader`: client S offers up to [`SLOW_READER_OFFER`] and reads
/// nothing; the phase ends when S's writes have made no progress for
/// [`SLOW_READER_STALL`] (the server stopped reading from it), while client
/// F makes a round trip every 100 ms that must each take under 1 s, and the
/// server tree's PSS growth must stay under [`SLOW_READER_PSS_LIMIT`].
/// Then S half-closes and reads: every byte it wrote must come back, then
/// EOF.
pub(crate) fn slow_reader(target: &Target) -> CaseResult {
    const TICK: Duration = Duration::from_millis(100);
    const FAST_LIMIT: Duration = Duration::from_secs(1);
    let pattern = Pattern(0x5_10e);
    let baseline = match target.pid {
        Some(pid) => Some((
            pid,
            tree::pss_bytes(pid)
                .ok_or_else(|| format!("cannot read the PSS of server pid {pid} from /proc"))?,
        )),
        None => None,
    };

    let mut slow = connect_small_rcvbuf(target.addr, SMALL_RCVBUF, "client S")?;
    let mut fast = connect(target.addr, "client F")?;
    let start = Instant::now();
    let feed = Feed::start(
        &slow,
        FeedPlan {
            pattern,
            limit: SLOW_READER_OFFER,
            give_up_after: Some(SLOW_READER_STALL),
            deadline: start + Duration::from_secs(60),
            then_shutdown: false,
        },
        "client S",
    )?;

    let mut round_trips = 0;
    let mut slowest = Duration::ZERO;
    let mut peak_growth = 0u64;
    let check_memory = |peak: &mut u64| -> Result<(), Failure> {
        let Some((pid, base)) = baseline else {
            return Ok(());
        };
        let now = tree::pss_bytes(pid).ok_or_else(|| {
            Failure::Broken(format!("server pid {pid} vanished while S was not reading"))
        })?;
        *peak = (*peak).max(now.saturating_sub(base));
        if *peak > SLOW_READER_PSS_LIMIT {
            return Err(Failure::Broken(format!(
                "server memory (PSS of its tree) grew by {} while S wrote {} and read nothing \
                 (limit {} MiB): output is not bounded per connection",
                mib(*peak),
                mib(feed.written() as u64),
                SLOW_READER_PSS_LIMIT >> 20
            )));
        }
        Ok(())
    };
    while !feed.is_finished() {
        let tick = Instant::now();
        let msg = format!("F: {round_trips}\n");
        let who = format!("client F, round trip {round_trips} while S does not read");
        std::io::Write::write_all(&mut fast, msg.as_bytes())
            .map_err(|e| format!("{who}: write failed: {e}"))?;
        expect_echo(&mut fast, msg.as_bytes(), tick + FAST_LIMIT)
            .map_err(|e| echo_failure(&e, &who))?;
        slowest = slowest.max(tick.elapsed());
        round_trips += 1;
        check_memory(&mut peak_growth)?;
        if let Some(rest) = (tick + TICK).checked_duration_since(Instant::now()) {
            thread::sleep(rest);
        }
    }
    check_memory(&mut peak_growth)?;
    let end = feed.stop()?;
    if end.complete {
        return Err(Failure::Broken(format!(
            "client S wrote all {} without reading one byte: the server read everything and \
             buffers it without bound",
            mib(end.written as u64)
        )));
    }
    let stalled_after = start.elapsed();

    // Back-pressure must not lose anything: every byte comes back, then EOF.
    slow.shutdown(Shutdown::Write)
        .map_err(|e| format!("client S: shutdown(Write) failed: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    expect_pattern(&mut slow, pattern, 0, end.written, deadline, IO_TIMEOUT)
        .map_err(|e| echo_failure(&e, "client S, reading at last"))?;
    expect_eof(&mut slow, end.written, "client S")?;
    let memory = match baseline {
        Some(_) => format!(
            "PSS growth peak {} (limit {} MiB)",
            mib(peak_growth),
            SLOW_READER_PSS_LIMIT >> 20
        ),
        None => "PSS not checked (no pid)".to_string(),
    };
    Ok(format!(
        "S stalled after {} (phase {}); F: {round_trips} round trips, slowest {:.1} ms; {memory}",
        mib(end.written as u64),
        secs(super::client::round_up(stalled_after)),
        slowest.as_secs_f64() * 1e3
    ))
}

/// What client S of `slow-reader` offers at most. Far more than any sane
/// server buffers for one connection plus the kernel's socket buffers
/// (a few MiB each way on loopback), so a server that keeps reading from
/// a client that never reads either trips the memory bound or takes all
/// of it, and both are breakage.
pub const SLOW_READER_OFFER: usize = 256 * MIB;

/// How long S's writes must make no progress before `slow-reader` counts
/// the server as having stopped reading. Long enough that a server merely
/// busy for a moment (a loaded 2-core machine) is not taken for one that
/// stopped.
pub const SLOW_READER_STALL: Duration = Duration::from_secs(2);

/// `interleaved`: [`INTERLEAVED_CLIENTS`] clients at once, each writing
/// 1 MiB in random 1–16 KiB chunks with random short pauses, while its
/// reader thread verifies the echo. Seeds are fixed per client, so a
/// failure replays. What it catches: state shared between connections that
/// should not be (one buffer for all, a connection table indexed wrongly),
/// which only shows when several clients are mid-stream at the same time.
pub(crate) fn interleaved(addr: SocketAddr) -> CaseResult {
    let mut clients = Vec::with_capacity(INTERLEAVED_CLIENTS);
    for id in 0..INTERLEAVED_CLIENTS {
        clients.push(connect(addr, &format!("client {id}"))?);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut handles = Vec::new();
    for (id, s) in clients.into_iter().enumerate() {
        handles.push(
            thread::Builder::new()
                .name(format!("interleaved-{id}"))
                .spawn(move || interleaved_client(id, s, deadline))
                .map_err(|e| format!("cannot start client thread {id}: {e}"))?,
        );
    }
    let mut first_error: Option<Failure> = None;
    for h in handles {
        let r = h
            .join()
            .unwrap_or_else(|_| Err(Failure::Broken("a client thread panicked".into())));
        if let Err(e) = r {
            // Breakage outranks a shortfall: report the worst.
            match (&first_error, &e) {
                (None, _) | (Some(Failure::Short(_)), Failure::Broken(_)) => first_error = Some(e),
                _ => {}
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(format!(
            "{INTERLEAVED_CLIENTS} clients × 1 MiB in random 1–16 KiB chunks"
        )),
    }
}

/// Clients of `interleaved`. Dozens keep several streams mid-flight at any
/// instant on two cores, without a thread count that would itself be the
/// test.
pub const INTERLEAVED_CLIENTS: usize = 32;

fn interleaved_client(id: usize, mut s: TcpStream, deadline: Instant) -> Result<(), Failure> {
    const TOTAL: usize = MIB;
    let who = format!("client {id}");
    let seed = 0x1e_0000 + id as u64;
    let pattern = Pattern(seed);
    let mut out = s
        .try_clone()
        .map_err(|e| format!("{who}: cannot clone the socket: {e}"))?;
    let writer = thread::Builder::new()
        .name(format!("interleaved-w{id}"))
        .spawn(move || -> Result<(), String> {
            let mut rng = Rng::new(seed);
            let mut buf = vec![0u8; 16 * KIB];
            let mut at = 0;
            while at < TOTAL {
                let n = rng.range(KIB, 16 * KIB).min(TOTAL - at);
                pattern.fill(at, &mut buf[..n]);
                std::io::Write::write_all(&mut out, &buf[..n])
                    .map_err(|e| format!("writer: write failed after {at} bytes: {e}"))?;
                at += n;
                // One chunk in four is followed by a pause of up to 2 ms, so
                // the streams interleave differently at every run of the
                // server but identically at every run of the case.
                if rng.range(0, 3) == 0 {
                    thread::sleep(Duration::from_micros(rng.range(0, 2000) as u64));
                }
            }
            Ok(())
        })
        .map_err(|e| format!("{who}: cannot start its writer: {e}"))?;
    let read = expect_pattern(&mut s, pattern, 0, TOTAL, deadline, IO_TIMEOUT);
    if read.is_err() {
        // Wake the writer if it is blocked on a server that stopped reading.
        let _ = s.shutdown(Shutdown::Both);
    }
    let written = writer.join();
    read.map_err(|e| echo_failure(&e, &format!("{who} (seed {seed:#x})")))?;
    written
        .unwrap_or_else(|_| Err("writer panicked".into()))
        .map_err(|e| Failure::Short(format!("{who}: {e}")))?;
    Ok(())
}
