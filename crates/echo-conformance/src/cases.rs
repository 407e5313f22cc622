//! The cases: small client programs over blocking `std` sockets.
//!
//! Every socket gets `TCP_NODELAY` (small messages go out at once instead of
//! waiting on Nagle) and 5 s read and write timeouts (`SO_RCVTIMEO`,
//! `SO_SNDTIMEO`). A client that must write and read at once writes from a
//! thread and reads in the calling one; reading verifies each chunk as it
//! arrives, so a lost or wrong byte fails at once instead of waiting out a
//! timeout for bytes that will never come. Each case also has an overall
//! deadline, so a server that trickles cannot stretch the suite without end.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socket2::SockRef;

use crate::{Failure, SLOW_READER_RSS_LIMIT, Target, tree};

/// `Ok(detail)` for a pass (the detail may be empty), `Err(what went wrong)`.
pub(crate) type CaseResult = Result<String, Failure>;

/// The longest any single read or write may stall.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(5);

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

pub(crate) fn run(case: &str, target: &Target) -> CaseResult {
    let addr = target.addr;
    match case {
        "small" => small(addr),
        "all-bytes" => all_bytes(addr),
        "large-1mib" => large(addr),
        "pipelined-1000" => pipelined(addr),
        "half-close" => half_close(addr),
        "concurrent-200" => concurrent(addr),
        "reset-isolation" => reset_isolation(addr),
        "sequential-1000" => sequential(addr),
        "slow-reader" => slow_reader(target),
        "idle-500" => idle(addr),
        other => Err(Failure::Broken(format!("no such case: {other}"))),
    }
}

fn small(addr: SocketAddr) -> CaseResult {
    let mut s = connect(addr, "client")?;
    round_trip(&mut s, b"hello, echo\n", "client")?;
    Ok(String::new())
}

fn all_bytes(addr: SocketAddr) -> CaseResult {
    let mut s = connect(addr, "client")?;
    let every: Vec<u8> = (0..=255).collect();
    round_trip(&mut s, &every, "client")?;
    Ok(String::new())
}

fn large(addr: SocketAddr) -> CaseResult {
    let mut s = connect(addr, "client")?;
    let data = Arc::new(pseudo_random(MIB, 0x1a2b_3c4d));
    let writer = Writer::start(&s, data.clone(), false)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    expect_echo(&mut s, &data, deadline).map_err(|e| format!("client: {e}"))?;
    writer.finish()?;
    Ok(String::new())
}

fn pipelined(addr: SocketAddr) -> CaseResult {
    let mut s = connect(addr, "client")?;
    let (data, starts) = pipelined_messages(1000);
    let data = Arc::new(data);
    let writer = Writer::start(&s, data.clone(), false)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    expect_echo(&mut s, &data, deadline).map_err(|e| match e.mismatch_at() {
        // Name the message too: it tells reordering from corruption.
        Some(offset) => {
            let index = starts.partition_point(|&start| start <= offset) - 1;
            format!("client: {e} (in message {index} of 1000)")
        }
        None => format!("client: {e}"),
    })?;
    writer.finish()?;
    Ok(format!("{} bytes in 1000 messages", data.len()))
}

/// Message `i` is 1..=512 bytes long, starts with `#i:` (cut short when the
/// message is) and goes on with a pattern that depends on `i`. Returns the
/// concatenation and where each message starts in it.
fn pipelined_messages(count: usize) -> (Vec<u8>, Vec<usize>) {
    let mut data = Vec::new();
    let mut starts = Vec::with_capacity(count);
    for i in 0..count {
        let len = 1 + (i * 131 + 7) % 512;
        let mut msg = format!("#{i}:").into_bytes();
        msg.extend((0..len).map(|j| b'a' + ((i + j) % 26) as u8));
        msg.truncate(len);
        starts.push(data.len());
        data.extend_from_slice(&msg);
    }
    (data, starts)
}

fn half_close(addr: SocketAddr) -> CaseResult {
    let mut s = connect(addr, "client")?;
    let data = Arc::new(pseudo_random(256 * KIB, 0x0dd_ba11));
    let writer = Writer::start(&s, data.clone(), true)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    expect_echo(&mut s, &data, deadline).map_err(|e| format!("client: {e}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| format!("client: cannot set a read timeout: {e}"))?;
    let mut extra = [0u8; 4096];
    loop {
        match s.read(&mut extra) {
            Ok(0) => break,
            Ok(n) => {
                return Err(Failure::Broken(format!(
                    "client: after all {} bytes came back, got {n} extra bytes instead of EOF",
                    data.len()
                )));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                return Err(Failure::Short(format!(
                    "client: all {} bytes came back but no EOF within {} s of the client's \
                     half-close (the server did not close its side)",
                    data.len(),
                    IO_TIMEOUT.as_secs()
                )));
            }
            Err(e) => {
                return Err(Failure::Broken(format!(
                    "client: reading EOF after the echo failed: {e} (the server should close \
                     cleanly)"
                )));
            }
        }
    }
    writer.finish()?;
    Ok(String::new())
}

fn concurrent(addr: SocketAddr) -> CaseResult {
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
            expect_echo(c, message(id).as_bytes(), deadline)
                .map_err(|e| format!("client {id}, round {round}: {e}"))?;
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

fn reset_isolation(addr: SocketAddr) -> CaseResult {
    let mut a = connect(addr, "client A")?;
    round_trip(&mut a, b"A: hello\n", "client A")?;
    let mut b = connect(addr, "client B")?;
    round_trip(&mut b, b"B: hello\n", "client B")?;
    b.write_all(&pseudo_random(64 * KIB, 0xb))
        .map_err(|e| format!("client B: writing 64 KiB failed: {e}"))?;
    // Linger 0: close sends RST instead of FIN, with echoed bytes unread. The
    // server's next read or write on B fails with ECONNRESET or EPIPE, and
    // that must cost B's connection only.
    SockRef::from(&b)
        .set_linger(Some(Duration::ZERO))
        .map_err(|e| format!("client B: cannot set SO_LINGER: {e}"))?;
    drop(b);
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

fn sequential(addr: SocketAddr) -> CaseResult {
    let deadline = Instant::now() + Duration::from_secs(30);
    let start = Instant::now();
    for i in 0..1000 {
        let who = format!("connection {i}");
        let mut s = connect(addr, &who)?;
        let msg = format!("{:<31}\n", format!("sequential {i}"));
        s.write_all(msg.as_bytes())
            .map_err(|e| format!("{who}: write failed: {e}"))?;
        expect_echo(&mut s, msg.as_bytes(), deadline).map_err(|e| format!("{who}: {e}"))?;
    }
    Ok(format!(
        "{:.0} connections/s",
        1000.0 / start.elapsed().as_secs_f64()
    ))
}

fn slow_reader(target: &Target) -> CaseResult {
    const TOTAL: usize = 16 * MIB;
    const PHASE: Duration = Duration::from_secs(3);
    const TICK: Duration = Duration::from_millis(100);
    const FAST_LIMIT: Duration = Duration::from_secs(1);

    let data = Arc::new(pseudo_random(TOTAL, 0x5_10e));
    let baseline = match target.pid {
        Some(pid) => Some((
            pid,
            tree::pss_bytes(pid)
                .ok_or_else(|| format!("cannot read the RSS of server pid {pid} from /proc"))?,
        )),
        None => None,
    };

    let mut slow = connect(target.addr, "client S")?;
    // S's writer legitimately stalls for the whole phase below, when the
    // server stops reading from a client that does not read.
    slow.set_write_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| format!("client S: cannot set a write timeout: {e}"))?;
    let writer = Writer::start(&slow, data.clone(), false)?;
    let mut fast = connect(target.addr, "client F")?;

    let phase_end = Instant::now() + PHASE;
    let mut round_trips = 0;
    let mut slowest = Duration::ZERO;
    let mut peak_growth = 0u64;
    while Instant::now() < phase_end {
        let tick = Instant::now();
        let msg = format!("F: {round_trips}\n");
        let who = format!("client F, round trip {round_trips} while S does not read");
        fast.write_all(msg.as_bytes())
            .map_err(|e| format!("{who}: write failed: {e}"))?;
        expect_echo(&mut fast, msg.as_bytes(), tick + FAST_LIMIT)
            .map_err(|e| format!("{who}: {e}"))?;
        slowest = slowest.max(tick.elapsed());
        round_trips += 1;
        if let Some((pid, base)) = baseline {
            let now = tree::pss_bytes(pid)
                .ok_or_else(|| format!("server pid {pid} vanished while S was not reading"))?;
            peak_growth = peak_growth.max(now.saturating_sub(base));
            if peak_growth > SLOW_READER_RSS_LIMIT {
                return Err(Failure::Broken(format!(
                    "server memory (PSS) grew by {} while S wrote and did not read \
                     (limit {} MiB): output is not bounded per connection",
                    mib(peak_growth),
                    SLOW_READER_RSS_LIMIT >> 20
                )));
            }
        }
        if let Some(rest) = (tick + TICK).checked_duration_since(Instant::now()) {
            thread::sleep(rest);
        }
    }

    // Back-pressure must not lose anything: every byte still comes back.
    let deadline = Instant::now() + Duration::from_secs(30);
    expect_echo(&mut slow, &data, deadline)
        .map_err(|e| format!("client S, reading its 16 MiB at last: {e}"))?;
    writer.finish()?;
    let memory = match baseline {
        Some(_) => format!(
            "RSS growth peak {} (limit {} MiB)",
            mib(peak_growth),
            SLOW_READER_RSS_LIMIT >> 20
        ),
        None => "RSS not checked (no pid)".to_string(),
    };
    Ok(format!(
        "F: {round_trips} round trips, slowest {:.1} ms; {memory}",
        slowest.as_secs_f64() * 1e3
    ))
}

fn idle(addr: SocketAddr) -> CaseResult {
    const CLIENTS: usize = 500;
    let (mut clients, connecting) = connect_many(addr, CLIENTS)?;
    // The point of the case: connections that say nothing for a while must
    // neither be dropped nor cost the server its attention afterwards.
    thread::sleep(Duration::from_secs(2));
    let deadline = Instant::now() + IO_TIMEOUT;
    let byte = |id: usize| [(id % 251) as u8];
    for (id, c) in clients.iter_mut().enumerate() {
        c.write_all(&byte(id))
            .map_err(|e| format!("client {id}, after 2 s idle: write failed: {e}"))?;
    }
    for (id, c) in clients.iter_mut().enumerate() {
        expect_echo(c, &byte(id), deadline)
            .map_err(|e| format!("client {id}, after 2 s idle: {e}"))?;
    }
    Ok(connecting)
}

// ---- helpers -------------------------------------------------------------

pub(crate) fn connect(addr: SocketAddr, who: &str) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .map_err(|e| format!("{who}: cannot connect to {addr}: {e}"))?;
    s.set_nodelay(true)
        .and_then(|()| s.set_read_timeout(Some(IO_TIMEOUT)))
        .and_then(|()| s.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| format!("{who}: cannot set socket options: {e}"))?;
    Ok(s)
}

/// Writes `msg` and reads it back, within [`IO_TIMEOUT`].
pub(crate) fn round_trip(s: &mut TcpStream, msg: &[u8], who: &str) -> Result<(), String> {
    s.write_all(msg)
        .map_err(|e| format!("{who}: write failed: {e}"))?;
    expect_echo(s, msg, Instant::now() + IO_TIMEOUT).map_err(|e| format!("{who}: {e}"))
}

pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Why an echo did not match, with how far it got.
#[derive(Debug)]
struct EchoError {
    got: usize,
    total: usize,
    kind: EchoErrorKind,
}

#[derive(Debug)]
enum EchoErrorKind {
    Mismatch {
        expected: u8,
        actual: u8,
    },
    Closed,
    Timeout(Duration),
    /// The case's overall time budget ran out before this read could start.
    OutOfTime,
    Io(io::Error),
}

impl EchoError {
    fn mismatch_at(&self) -> Option<usize> {
        matches!(self.kind, EchoErrorKind::Mismatch { .. }).then_some(self.got)
    }
}

impl std::fmt::Display for EchoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (got, total) = (self.got, self.total);
        match &self.kind {
            EchoErrorKind::Mismatch { expected, actual } => write!(
                f,
                "first mismatch at byte offset {got}: expected {expected:#04x}, got {actual:#04x}"
            ),
            EchoErrorKind::Closed if got == 0 => {
                write!(f, "connection closed by the server before any echo")
            }
            EchoErrorKind::Closed => {
                write!(
                    f,
                    "connection closed after {got} of {total} bytes came back"
                )
            }
            EchoErrorKind::Timeout(waited) if got == 0 => {
                write!(f, "no echo within {}", secs(*waited))
            }
            EchoErrorKind::Timeout(waited) => write!(
                f,
                "only {got} of {total} bytes came back; nothing more within {}",
                secs(*waited)
            ),
            EchoErrorKind::OutOfTime => write!(
                f,
                "the case's time budget ran out with {got} of {total} bytes back"
            ),
            EchoErrorKind::Io(e) => {
                write!(f, "read failed after {got} of {total} bytes came back: {e}")
            }
        }
    }
}

fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

/// Reads until `expected` has come back, comparing each chunk on arrival.
/// No single read waits longer than [`IO_TIMEOUT`], and none past `deadline`.
fn expect_echo(s: &mut TcpStream, expected: &[u8], deadline: Instant) -> Result<(), EchoError> {
    let total = expected.len();
    let mut buf = vec![0u8; total.clamp(1, 64 * KIB)];
    let mut got = 0;
    let fail = |got, kind| EchoError { got, total, kind };
    while got < total {
        let now = Instant::now();
        let wait = deadline.saturating_duration_since(now).min(IO_TIMEOUT);
        if wait.is_zero() {
            return Err(fail(got, EchoErrorKind::OutOfTime));
        }
        s.set_read_timeout(Some(wait))
            .map_err(|e| fail(got, EchoErrorKind::Io(e)))?;
        let want = buf.len().min(total - got);
        match s.read(&mut buf[..want]) {
            Ok(0) => return Err(fail(got, EchoErrorKind::Closed)),
            Ok(n) => {
                let (chunk, exp) = (&buf[..n], &expected[got..got + n]);
                if chunk != exp {
                    let i = chunk.iter().zip(exp).position(|(a, b)| a != b).unwrap_or(0);
                    return Err(fail(
                        got + i,
                        EchoErrorKind::Mismatch {
                            expected: exp[i],
                            actual: chunk[i],
                        },
                    ));
                }
                got += n;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                return Err(fail(got, EchoErrorKind::Timeout(round_up(wait))));
            }
            Err(e) => return Err(fail(got, EchoErrorKind::Io(e))),
        }
    }
    Ok(())
}

/// 4.9996 s of waiting reads better as "5 s".
fn round_up(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().div_ceil(100) as u64 * 100)
}

/// A thread writing a whole buffer to a clone of a client's socket, while
/// the case reads from the original.
struct Writer {
    handle: Option<JoinHandle<Result<(), String>>>,
    stream: TcpStream,
}

impl Writer {
    /// Writes `data` in 64 KiB chunks (so a failure can say where), then
    /// half-closes if `then_shutdown`.
    fn start(s: &TcpStream, data: Arc<Vec<u8>>, then_shutdown: bool) -> Result<Writer, String> {
        let stream = s
            .try_clone()
            .map_err(|e| format!("cannot clone the client socket: {e}"))?;
        let mut out = s
            .try_clone()
            .map_err(|e| format!("cannot clone the client socket: {e}"))?;
        let handle = thread::Builder::new()
            .name("conformance-writer".into())
            .spawn(move || {
                let mut written = 0;
                for chunk in data.chunks(64 * KIB) {
                    out.write_all(chunk).map_err(|e| {
                        let e = if is_timeout(&e) {
                            "timed out".to_string()
                        } else {
                            e.to_string()
                        };
                        format!("writer: stuck after {written} of {} bytes: {e}", data.len())
                    })?;
                    written += chunk.len();
                }
                if then_shutdown {
                    out.shutdown(Shutdown::Write)
                        .map_err(|e| format!("writer: shutdown(Write) failed: {e}"))?;
                }
                Ok(())
            })
            .map_err(|e| format!("cannot start a writer thread: {e}"))?;
        Ok(Writer {
            handle: Some(handle),
            stream,
        })
    }

    /// Waits (bounded) for the writer and returns its result. Called once
    /// everything was echoed, so the writer is done or about to be.
    fn finish(mut self) -> Result<(), String> {
        let handle = self.handle.take().expect("finish is called once");
        let deadline = Instant::now() + IO_TIMEOUT;
        while !handle.is_finished() {
            if Instant::now() >= deadline {
                // Drop shuts the socket down, which ends the thread.
                return Err("writer: still running after the whole echo arrived".to_string());
            }
            thread::sleep(Duration::from_millis(2));
        }
        handle
            .join()
            .unwrap_or_else(|_| Err("writer: panicked".to_string()))
    }
}

impl Drop for Writer {
    /// On a failed case the writer may be blocked in `send(2)`;
    /// `shutdown(2)` wakes it with EPIPE, so no thread outlives its case by
    /// more than a moment.
    fn drop(&mut self) {
        if self.handle.is_some() {
            let _ = self.stream.shutdown(Shutdown::Both);
        }
    }
}

/// `len` bytes from xorshift64: incompressible enough that a server cannot
/// pass by accident, and reproducible without a dependency.
pub(crate) fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelined_messages_have_every_length_and_their_index() {
        let (data, starts) = pipelined_messages(1000);
        assert_eq!(starts.len(), 1000);
        let lens: Vec<usize> = starts
            .windows(2)
            .map(|w| w[1] - w[0])
            .chain([data.len() - starts[999]])
            .collect();
        assert!(lens.iter().all(|&l| (1..=512).contains(&l)));
        assert_eq!(lens.iter().min(), Some(&1));
        assert_eq!(lens.iter().max(), Some(&512));
        assert!(data[starts[123]..].starts_with(b"#123:"));
    }

    #[test]
    fn pseudo_random_is_reproducible_and_varied() {
        let a = pseudo_random(4096, 7);
        assert_eq!(a, pseudo_random(4096, 7));
        assert_ne!(a, pseudo_random(4096, 8));
        let distinct = a.iter().collect::<std::collections::HashSet<_>>().len();
        assert!(distinct > 250, "only {distinct} distinct byte values");
    }
}
