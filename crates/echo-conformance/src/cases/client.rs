//! The client side every case is built from: connecting, checking an echo
//! as it arrives, and writer threads that know when they are stuck.
//!
//! Syscalls: `socket(2)`/`setsockopt(2)` (`SO_RCVBUF` before `connect(2)`,
//! `TCP_NODELAY`, `SO_RCVTIMEO`, `SO_SNDTIMEO`, `SO_LINGER`), blocking
//! `read(2)`/`write(2)`, `shutdown(2)`. Blocking sockets with timeouts, and a
//! thread where a client must write and read at once, keep each case a
//! straight-line program; the alternative, one non-blocking event loop for
//! the client side, would be a second server to debug. Every wait is bounded
//! by a timeout or a deadline, so a broken server fails a case with a
//! detail instead of hanging the harness.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// The longest any single read or write may stall.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the echo of a short message may keep a client waiting in the
/// cases where one-client-at-a-time servers fail (`concurrent-200`,
/// `reset-isolation`, `idle-500`): a correct server answers in well under a
/// millisecond, so 2 s leave a loaded machine a thousandfold margin, and a
/// server that cannot answer fails in 2 s rather than 5.
pub(crate) const ECHO_WAIT: Duration = Duration::from_secs(2);

pub(crate) const KIB: usize = 1024;
pub(crate) const MIB: usize = 1024 * KIB;

pub(crate) fn connect(addr: SocketAddr, who: &str) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .map_err(|e| format!("{who}: cannot connect to {addr}: {e}"))?;
    configure(&s, who)?;
    Ok(s)
}

/// Connects with `SO_RCVBUF` set to `rcvbuf` before `connect(2)`: the
/// window the client advertises is fixed at the handshake, so setting it
/// afterwards would not shrink it. A small window keeps the return path
/// congested, so the server's writes block (or return `EAGAIN`) early and
/// its own buffering is what the case sees.
pub(crate) fn connect_small_rcvbuf(
    addr: SocketAddr,
    rcvbuf: usize,
    who: &str,
) -> Result<TcpStream, String> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .and_then(|s| s.set_recv_buffer_size(rcvbuf).map(|()| s))
        .map_err(|e| format!("{who}: cannot make a socket with a {rcvbuf}-byte SO_RCVBUF: {e}"))?;
    socket
        .connect_timeout(&addr.into(), IO_TIMEOUT)
        .map_err(|e| format!("{who}: cannot connect to {addr}: {e}"))?;
    let s: TcpStream = socket.into();
    configure(&s, who)?;
    Ok(s)
}

fn configure(s: &TcpStream, who: &str) -> Result<(), String> {
    s.set_nodelay(true)
        .and_then(|()| s.set_read_timeout(Some(IO_TIMEOUT)))
        .and_then(|()| s.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| format!("{who}: cannot set socket options: {e}"))
}

/// Closes with `SO_LINGER` 0, so the kernel sends RST instead of FIN and
/// discards whatever is unsent or unread.
pub(crate) fn reset(s: TcpStream, who: &str) -> Result<(), String> {
    SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .map_err(|e| format!("{who}: cannot set SO_LINGER: {e}"))?;
    drop(s);
    Ok(())
}

/// Writes `msg` and reads it back, within [`IO_TIMEOUT`].
pub(crate) fn round_trip(s: &mut TcpStream, msg: &[u8], who: &str) -> Result<(), String> {
    round_trip_within(s, msg, IO_TIMEOUT, who).map_err(|f| f.detail().to_string())
}

/// Writes `msg` and reads it back within `limit`; wrong or lost bytes are
/// [`crate::Failure::Broken`], a late echo [`crate::Failure::Short`].
pub(crate) fn round_trip_within(
    s: &mut TcpStream,
    msg: &[u8],
    limit: Duration,
    who: &str,
) -> Result<(), crate::Failure> {
    s.write_all(msg)
        .map_err(|e| format!("{who}: write failed: {e}"))?;
    expect_stream(
        s,
        0,
        msg.len(),
        &|at, out| out.copy_from_slice(&msg[at..at + out.len()]),
        Instant::now() + limit,
        limit,
    )
    .map_err(|e| super::echo_failure(&e, who))
}

pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Why an echo did not match, with how far it got.
#[derive(Debug)]
pub(crate) struct EchoError {
    pub(crate) got: usize,
    total: usize,
    pub(crate) kind: EchoErrorKind,
}

#[derive(Debug)]
pub(crate) enum EchoErrorKind {
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
    pub(crate) fn mismatch_at(&self) -> Option<usize> {
        matches!(self.kind, EchoErrorKind::Mismatch { .. }).then_some(self.got)
    }

    /// True when bytes were wrong, or the server ended a stream it had
    /// started to echo (lost bytes): breakage no design excuses. A stream
    /// that is late, or closed before any echo (turned away), is a
    /// shortfall instead.
    pub(crate) fn is_breakage(&self) -> bool {
        match self.kind {
            EchoErrorKind::Mismatch { .. } => true,
            EchoErrorKind::Closed | EchoErrorKind::Io(_) => self.got > 0,
            EchoErrorKind::Timeout(_) | EchoErrorKind::OutOfTime => false,
        }
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

pub(crate) fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

/// Reads until `expected` has come back, comparing each chunk on arrival.
/// No single read waits longer than [`IO_TIMEOUT`], and none past `deadline`.
pub(crate) fn expect_echo(
    s: &mut TcpStream,
    expected: &[u8],
    deadline: Instant,
) -> Result<(), EchoError> {
    expect_echo_idle(s, expected, deadline, IO_TIMEOUT)
}

/// [`expect_echo`] with no single read waiting longer than `idle`.
pub(crate) fn expect_echo_idle(
    s: &mut TcpStream,
    expected: &[u8],
    deadline: Instant,
    idle: Duration,
) -> Result<(), EchoError> {
    expect_stream(
        s,
        0,
        expected.len(),
        &|at, out| out.copy_from_slice(&expected[at..at + out.len()]),
        deadline,
        idle,
    )
}

/// Reads `len` bytes that must equal `pattern` from offset `from` on.
pub(crate) fn expect_pattern(
    s: &mut TcpStream,
    pattern: Pattern,
    from: usize,
    len: usize,
    deadline: Instant,
    idle: Duration,
) -> Result<(), EchoError> {
    expect_stream(
        s,
        from,
        len,
        &|at, out| pattern.fill(at, out),
        deadline,
        idle,
    )
}

/// The one read loop: `expected(offset, out)` fills `out` with what the
/// stream must hold at `offset`. Offsets in errors count from `from`, the
/// position in the whole stream, so a failure names the byte exactly. No
/// read waits longer than `idle`, and none past `deadline`.
fn expect_stream(
    s: &mut TcpStream,
    from: usize,
    len: usize,
    expected: &dyn Fn(usize, &mut [u8]),
    deadline: Instant,
    idle: Duration,
) -> Result<(), EchoError> {
    let total = from + len;
    let mut buf = vec![0u8; len.clamp(1, 64 * KIB)];
    let mut exp = vec![0u8; buf.len()];
    let mut got = from;
    let fail = |got, kind| EchoError { got, total, kind };
    while got < total {
        let wait = deadline.saturating_duration_since(Instant::now()).min(idle);
        if wait.is_zero() {
            return Err(fail(got, EchoErrorKind::OutOfTime));
        }
        s.set_read_timeout(Some(wait))
            .map_err(|e| fail(got, EchoErrorKind::Io(e)))?;
        let want = buf.len().min(total - got);
        match s.read(&mut buf[..want]) {
            Ok(0) => return Err(fail(got, EchoErrorKind::Closed)),
            Ok(n) => {
                expected(got, &mut exp[..n]);
                let (chunk, exp) = (&buf[..n], &exp[..n]);
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

/// After the whole echo: the next read must be EOF. Extra bytes are
/// breakage; no EOF in time is a shortfall; a reset instead of a clean
/// close is breakage (the server threw the connection away).
pub(crate) fn expect_eof(
    s: &mut TcpStream,
    echoed: usize,
    who: &str,
) -> Result<(), crate::Failure> {
    use crate::Failure;
    s.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| format!("{who}: cannot set a read timeout: {e}"))?;
    let mut extra = [0u8; 4096];
    loop {
        match s.read(&mut extra) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                return Err(Failure::Broken(format!(
                    "{who}: after all {echoed} bytes came back, got {n} extra bytes instead of EOF"
                )));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                return Err(Failure::Short(format!(
                    "{who}: all {echoed} bytes came back but no EOF within {} of the client's \
                     half-close (the server did not close its side)",
                    secs(IO_TIMEOUT)
                )));
            }
            Err(e) => {
                return Err(Failure::Broken(format!(
                    "{who}: reading EOF after the echo failed: {e} (the server should close \
                     cleanly)"
                )));
            }
        }
    }
}

/// 4.9996 s of waiting reads better as "5 s".
pub(crate) fn round_up(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().div_ceil(100) as u64 * 100)
}

/// A thread writing a whole buffer to a clone of a client's socket, while
/// the case reads from the original.
pub(crate) struct Writer {
    handle: Option<JoinHandle<Result<(), String>>>,
    stream: TcpStream,
    written: Arc<AtomicU64>,
}

impl Writer {
    /// Writes `data` in 64 KiB chunks (so a failure can say where), then
    /// half-closes if `then_shutdown`.
    pub(crate) fn start(
        s: &TcpStream,
        data: Arc<Vec<u8>>,
        then_shutdown: bool,
    ) -> Result<Writer, String> {
        let bounds: Vec<(usize, usize)> = (0..data.len())
            .step_by(64 * KIB)
            .map(|at| (at, (at + 64 * KIB).min(data.len())))
            .collect();
        Writer::start_pieces(s, data, bounds, then_shutdown)
    }

    /// Writes `data` with one `write_all` per `(start, end)` piece: for
    /// small pieces on a socket with `TCP_NODELAY`, one `write(2)` and one
    /// segment each, which is how a client sends separate messages.
    pub(crate) fn start_pieces(
        s: &TcpStream,
        data: Arc<Vec<u8>>,
        pieces: Vec<(usize, usize)>,
        then_shutdown: bool,
    ) -> Result<Writer, String> {
        let stream = s
            .try_clone()
            .map_err(|e| format!("cannot clone the client socket: {e}"))?;
        let mut out = s
            .try_clone()
            .map_err(|e| format!("cannot clone the client socket: {e}"))?;
        let written = Arc::new(AtomicU64::new(0));
        let progress = written.clone();
        let handle = thread::Builder::new()
            .name("conformance-writer".into())
            .spawn(move || {
                for &(start, end) in &pieces {
                    progress.store(start as u64, Ordering::Release);
                    out.write_all(&data[start..end]).map_err(|e| {
                        let e = if is_timeout(&e) {
                            "timed out".to_string()
                        } else {
                            e.to_string()
                        };
                        format!("writer: stuck after {start} of {} bytes: {e}", data.len())
                    })?;
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
            written,
        })
    }

    /// Waits until the writer is done, or has made no progress (no piece
    /// begun) for `stall`, or `deadline` passed; true if it is done.
    pub(crate) fn wait_done_or_stalled(&self, stall: Duration, deadline: Instant) -> bool {
        let mut last = self.written.load(Ordering::Acquire);
        let mut since = Instant::now();
        loop {
            if self.handle.as_ref().is_none_or(|h| h.is_finished()) {
                return true;
            }
            let now = self.written.load(Ordering::Acquire);
            if now != last {
                (last, since) = (now, Instant::now());
            } else if since.elapsed() >= stall || Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits (bounded) for the writer and returns its result. Called once
    /// everything was echoed, so the writer is done or about to be.
    pub(crate) fn finish(mut self) -> Result<(), String> {
        let handle = self.handle.take().expect("finish is called once");
        join_bounded(handle, IO_TIMEOUT)
            .ok_or_else(|| "writer: still running after the whole echo arrived".to_string())?
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

/// Joins `handle` if it finishes within `limit`; `None` if it does not (the
/// thread is then left to end on its own, which every writer here does
/// once its socket is shut down or times out).
fn join_bounded<T>(handle: JoinHandle<T>, limit: Duration) -> Option<T> {
    let deadline = Instant::now() + limit;
    while !handle.is_finished() {
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(2));
    }
    handle.join().ok()
}

/// How a [`Feed`] ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FeedEnd {
    /// Bytes the kernel accepted.
    pub(crate) written: usize,
    /// True if all of them went; false if the writer gave up on a stall.
    pub(crate) complete: bool,
}

/// State a feeding thread shares with the case.
#[derive(Debug)]
struct FeedState {
    started: Instant,
    written: AtomicU64,
    /// Milliseconds since `started` of the last write that made progress.
    progress_ms: AtomicU64,
    stop: AtomicBool,
}

/// A thread writing a [`Pattern`] stream and saying how far it got and
/// whether it is stuck: the cases that must tell "the server stopped
/// reading from me" from "the server is slow" watch its progress.
///
/// It writes with a short `SO_SNDTIMEO` ([`FEED_POLL`]) so that a blocked
/// `write(2)` returns to look at the clock and the stop flag; the
/// alternative, a non-blocking socket and `poll(2)`, would need the same
/// loop with more code.
pub(crate) struct Feed {
    state: Arc<FeedState>,
    handle: Option<JoinHandle<Result<FeedEnd, String>>>,
    stream: TcpStream,
}

/// How long one blocked `write` waits before the feeder looks around.
const FEED_POLL: Duration = Duration::from_millis(50);

/// What a [`Feed`] writes, and when it gives up.
pub(crate) struct FeedPlan {
    pub(crate) pattern: Pattern,
    /// Most bytes to offer.
    pub(crate) limit: usize,
    /// Give up (a normal end) once no byte went for this long; `None`: keep
    /// trying until `deadline`.
    pub(crate) give_up_after: Option<Duration>,
    /// Past this, a writer still stuck is an error.
    pub(crate) deadline: Instant,
    /// Half-close after the last byte.
    pub(crate) then_shutdown: bool,
}

impl Feed {
    pub(crate) fn start(s: &TcpStream, plan: FeedPlan, who: &str) -> Result<Feed, String> {
        let clone = || {
            s.try_clone()
                .map_err(|e| format!("{who}: cannot clone the socket: {e}"))
        };
        let stream = clone()?;
        let mut out = clone()?;
        out.set_write_timeout(Some(FEED_POLL))
            .map_err(|e| format!("{who}: cannot set a write timeout: {e}"))?;
        let state = Arc::new(FeedState {
            started: Instant::now(),
            written: AtomicU64::new(0),
            progress_ms: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let shared = state.clone();
        let who = who.to_string();
        let handle = thread::Builder::new()
            .name("conformance-feed".into())
            .spawn(move || feed(&mut out, &plan, &shared, &who))
            .map_err(|e| format!("cannot start a writer thread: {e}"))?;
        Ok(Feed {
            state,
            handle: Some(handle),
            stream,
        })
    }

    pub(crate) fn written(&self) -> usize {
        self.state.written.load(Ordering::Acquire) as usize
    }

    /// How long since the last byte went (or since the start).
    pub(crate) fn stalled_for(&self) -> Duration {
        let last = Duration::from_millis(self.state.progress_ms.load(Ordering::Acquire));
        self.state.started.elapsed().saturating_sub(last)
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Asks the writer to stop at its next look around, then waits for it.
    pub(crate) fn stop(mut self) -> Result<FeedEnd, String> {
        self.state.stop.store(true, Ordering::Release);
        let handle = self.handle.take().expect("stop is called once");
        // The writer looks at the flag every FEED_POLL at most.
        join_bounded(handle, IO_TIMEOUT).ok_or_else(|| "writer: did not stop".to_string())?
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        if self.handle.is_some() {
            self.state.stop.store(true, Ordering::Release);
            let _ = self.stream.shutdown(Shutdown::Both);
        }
    }
}

fn feed(
    out: &mut TcpStream,
    plan: &FeedPlan,
    state: &FeedState,
    who: &str,
) -> Result<FeedEnd, String> {
    let mut buf = vec![0u8; 64 * KIB];
    let mut at = 0;
    let end = |written, complete| FeedEnd { written, complete };
    while at < plan.limit {
        let n = buf.len().min(plan.limit - at);
        plan.pattern.fill(at, &mut buf[..n]);
        let mut off = 0;
        while off < n {
            if state.stop.load(Ordering::Acquire) {
                return Ok(end(at + off, false));
            }
            match out.write(&buf[off..n]) {
                Ok(0) => return Err(format!("{who}: write returned 0 after {} bytes", at + off)),
                Ok(k) => {
                    off += k;
                    state.written.store((at + off) as u64, Ordering::Release);
                    let ms = state.started.elapsed().as_millis() as u64;
                    state.progress_ms.store(ms, Ordering::Release);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {
                    let last = Duration::from_millis(state.progress_ms.load(Ordering::Acquire));
                    let stalled = state.started.elapsed().saturating_sub(last);
                    if plan.give_up_after.is_some_and(|g| stalled >= g) {
                        return Ok(end(at + off, false));
                    }
                    if Instant::now() >= plan.deadline {
                        return Err(format!(
                            "{who}: writing stuck after {} of {} bytes, for {}",
                            at + off,
                            plan.limit,
                            secs(round_up(stalled))
                        ));
                    }
                }
                Err(e) => return Err(format!("{who}: write failed after {} bytes: {e}", at + off)),
            }
        }
        at += n;
    }
    if plan.then_shutdown {
        out.shutdown(Shutdown::Write)
            .map_err(|e| format!("{who}: shutdown(Write) failed: {e}"))?;
    }
    Ok(end(at, true))
}

/// A reproducible stream of pseudo-random bytes that can be produced from
/// any offset: the byte at offset `i` depends only on the seed and `i`, so a
/// case can send hundreds of MiB and check them without holding them. Each
/// 8-byte word is SplitMix64 of its index: nothing repeats or compresses,
/// so a server that loses, duplicates or reorders bytes cannot pass by
/// accident.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pattern(pub(crate) u64);

impl Pattern {
    fn word(self, index: u64) -> [u8; 8] {
        let mut z = self.0 ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)).to_le_bytes()
    }

    /// Fills `out` with the stream's bytes from `offset` on.
    pub(crate) fn fill(self, offset: usize, out: &mut [u8]) {
        let mut pos = offset;
        let mut i = 0;
        while i < out.len() {
            let word = self.word((pos / 8) as u64);
            let skip = pos % 8;
            let take = (8 - skip).min(out.len() - i);
            out[i..i + take].copy_from_slice(&word[skip..skip + take]);
            i += take;
            pos += take;
        }
    }

    #[cfg(test)]
    fn bytes(self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.fill(0, &mut v);
        v
    }
}

/// xorshift64: the case's own reproducible choices (chunk sizes, pauses,
/// the order of endings), seeded so a failure can be replayed.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `lo..=hi` (modulo bias is irrelevant here).
    pub(crate) fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
}

/// `len` bytes from xorshift64: incompressible enough that a server cannot
/// pass by accident, and reproducible without a dependency.
pub(crate) fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_random_is_reproducible_and_varied() {
        let a = pseudo_random(4096, 7);
        assert_eq!(a, pseudo_random(4096, 7));
        assert_ne!(a, pseudo_random(4096, 8));
        let distinct = a.iter().collect::<std::collections::HashSet<_>>().len();
        assert!(distinct > 250, "only {distinct} distinct byte values");
    }

    #[test]
    fn a_pattern_is_the_same_from_any_offset() {
        let p = Pattern(42);
        let whole = p.bytes(1000);
        for (at, len) in [(0, 1), (3, 17), (8, 8), (511, 489), (999, 1)] {
            let mut part = vec![0u8; len];
            p.fill(at, &mut part);
            assert_eq!(part, whole[at..at + len], "at {at}, len {len}");
        }
        assert_ne!(whole, Pattern(43).bytes(1000));
        let distinct = whole.iter().collect::<std::collections::HashSet<_>>().len();
        assert!(distinct > 250, "only {distinct} distinct byte values");
    }

    #[test]
    fn rng_ranges_are_inclusive_and_reproducible() {
        let mut a = Rng::new(5);
        let v: Vec<usize> = (0..1000).map(|_| a.range(1, 4)).collect();
        assert!(v.iter().all(|x| (1..=4).contains(x)));
        assert!((1..=4).all(|x| v.contains(&x)));
        let mut b = Rng::new(5);
        assert_eq!(v, (0..1000).map(|_| b.range(1, 4)).collect::<Vec<_>>());
    }
}
