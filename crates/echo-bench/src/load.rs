//! The load engine: many verified echo connections driven by mio on a few
//! threads.
//!
//! Syscalls: non-blocking `connect(2)`, `epoll_wait(2)` through mio,
//! `timerfd_settime(2)` for the open loop's schedule, `read(2)`/`write(2)`, `shutdown(2)` for the half-close, `setsockopt`
//! (`TCP_NODELAY`), `setrlimit(2)` for descriptors and `getrusage(2)` for the
//! client's own CPU time.
//!
//! Design choices and what they cost:
//! - Readiness, not threads: 10,000 connections are 10,000 entries in a
//!   `Vec`, partitioned over `threads` event loops. A thread per connection
//!   would measure the scheduler of the client as much as the server.
//! - Connections are opened in bounded batches of non-blocking connects
//!   (a server's listen backlog may be small: a SYN flood of our own would
//!   only buy retransmission delays) and all of them are established before
//!   the clock starts, so accept cost is not mixed into throughput.
//! - Closed loop by default: one message in flight per connection, the next
//!   one sent when the echo is complete. Simple, but it measures a server
//!   that is allowed to slow the client down.
//! - Open loop with `rate`: every connection sends on its own staggered
//!   schedule whatever the server does, and latency is taken from the
//!   *scheduled* send time, so a stalled server is charged for the messages
//!   it delayed (no coordinated omission). Echo keeps order, so replies are
//!   matched to messages by byte count.
//! - Every byte is checked: the payload is a function of (connection,
//!   message, position), so an echo from the wrong connection, a swapped or
//!   truncated message all show up as a mismatch.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use crate::stats::{self, Percentiles};

/// A connection with outstanding work and no byte moved for this long is
/// counted as a timeout and dropped; the same bound applies to connecting.
/// Generous on purpose: a server that serves one client at a time
/// (`iterative`) leaves the last of 50 connections waiting for the whole
/// run, and that wait is the figure to report, not an error.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Non-blocking connects in flight at once, per load thread.
const CONNECT_BATCH: usize = 64;
/// Bytes moved per `read`/`write` call at most.
const CHUNK: usize = 64 * 1024;
/// The token of the open loop's timerfd; connection tokens are indices.
const TIMER: Token = Token(usize::MAX - 1);
/// How many error descriptions are kept for the report.
const ERROR_EXAMPLES: usize = 5;

/// When a workload ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// This many messages in total, spread evenly over the connections.
    Messages(u64),
    /// Send for this long, then let the messages in flight come back.
    Duration(Duration),
}

/// One fixed workload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadSpec {
    /// The echo server.
    pub addr: SocketAddr,
    /// Connections, all open before the clock starts.
    pub conns: usize,
    /// Bytes per message.
    pub size: usize,
    /// Message count or duration.
    pub stop: Stop,
    /// Open loop at this many messages per second in total; closed loop when `None`.
    pub rate: Option<f64>,
    /// Event-loop threads; connections are partitioned over them.
    pub threads: usize,
}

impl LoadSpec {
    /// One-line description, e.g. for progress output.
    pub fn describe(&self) -> String {
        let stop = match self.stop {
            Stop::Messages(m) => format!("{m} messages"),
            Stop::Duration(d) => format!("{:.1} s", d.as_secs_f64()),
        };
        let lp = match self.rate {
            Some(r) => format!("open loop at {r} msg/s"),
            None => "closed loop".to_string(),
        };
        format!(
            "{stop} of {} B over {} connection(s) to {}, {lp}, {} thread(s)",
            self.size, self.conns, self.addr, self.threads
        )
    }
}

/// Kinds of failure, counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The connection could not be established.
    Connect,
    /// Reset, broken pipe, or closed by the server before the echo was complete.
    Reset,
    /// An echoed byte differed from what was sent, or more came back than was sent.
    Mismatch,
    /// No progress for [`STALL_TIMEOUT`].
    Timeout,
    /// Any other I/O error.
    Other,
}

/// Error counts plus the first few descriptions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Errors {
    /// Connections that could not be established.
    pub connect: u64,
    /// Resets and early closes.
    pub reset: u64,
    /// Corrupted, reordered or surplus bytes.
    pub mismatch: u64,
    /// Stalled connections.
    pub timeout: u64,
    /// Anything else.
    pub other: u64,
    /// The first few errors, described.
    pub examples: Vec<String>,
}

impl Errors {
    fn add(&mut self, kind: ErrorKind, what: String) {
        *match kind {
            ErrorKind::Connect => &mut self.connect,
            ErrorKind::Reset => &mut self.reset,
            ErrorKind::Mismatch => &mut self.mismatch,
            ErrorKind::Timeout => &mut self.timeout,
            ErrorKind::Other => &mut self.other,
        } += 1;
        if self.examples.len() < ERROR_EXAMPLES {
            self.examples.push(what);
        }
    }

    fn merge(&mut self, other: Errors) {
        self.connect += other.connect;
        self.reset += other.reset;
        self.mismatch += other.mismatch;
        self.timeout += other.timeout;
        self.other += other.other;
        let room = ERROR_EXAMPLES.saturating_sub(self.examples.len());
        self.examples.extend(other.examples.into_iter().take(room));
    }

    /// Every error counted.
    pub fn total(&self) -> u64 {
        self.connect + self.reset + self.mismatch + self.timeout + self.other
    }
}

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.total() == 0 {
            return f.write_str("none");
        }
        write!(
            f,
            "{} (connect {}, reset {}, mismatch {}, timeout {}, other {})",
            self.total(),
            self.connect,
            self.reset,
            self.mismatch,
            self.timeout,
            self.other
        )
    }
}

/// What one workload measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// The workload.
    pub spec: LoadSpec,
    /// Messages whose echo came back complete and verified.
    pub messages: u64,
    /// Messages the workload asked for (`None` in duration mode).
    pub expected_messages: Option<u64>,
    /// Payload bytes written and read back, verified.
    pub bytes_sent: u64,
    /// Payload bytes echoed and verified.
    pub bytes_received: u64,
    /// From the moment every connection was open to the last close.
    pub elapsed: Duration,
    /// Per-message latency in microseconds.
    pub latency: Histogram<u64>,
    /// Everything that went wrong.
    pub errors: Errors,
    /// User CPU time of the load threads over the measured window.
    pub client_user: Duration,
    /// System CPU time of the load threads over the measured window.
    pub client_sys: Duration,
}

impl LoadResult {
    /// True iff every message came back verified and nothing failed.
    pub fn ok(&self) -> bool {
        self.errors.total() == 0
            && self.expected_messages.is_none_or(|m| m == self.messages)
            && self.bytes_sent == self.bytes_received
    }

    /// Verified echoes per second.
    pub fn msgs_per_s(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Echoed payload, one way, in MB/s (10^6 bytes).
    pub fn mb_per_s(&self) -> f64 {
        self.bytes_received as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Client CPU seconds, user + system.
    pub fn client_cpu_s(&self) -> f64 {
        (self.client_user + self.client_sys).as_secs_f64()
    }

    /// The load generator used at least 90 % of the CPU its threads could
    /// have had: the figures then describe the client, not the server.
    pub fn saturated(&self) -> bool {
        self.client_cpu_s() / self.elapsed.as_secs_f64().max(1e-9) >= 0.9 * self.spec.threads as f64
    }

    /// The figures, several lines, as `load` prints them.
    pub fn render(&self) -> String {
        let p = Percentiles::of(&self.latency);
        let expected = match self.expected_messages {
            Some(m) if m != self.messages => format!(" of {m} expected"),
            _ => String::new(),
        };
        let mut s = format!(
            "messages     {}{expected} verified ({} B each)\n\
             elapsed      {:.3} s\n\
             throughput   {:.0} msgs/s, {:.2} MB/s (echoed payload, counted one way)\n\
             latency µs   p50 {}  p90 {}  p99 {}  p99.9 {}  max {}\n\
             errors       {}\n",
            self.messages,
            self.spec.size,
            self.elapsed.as_secs_f64(),
            self.msgs_per_s(),
            self.mb_per_s(),
            p.p50,
            p.p90,
            p.p99,
            p.p999,
            p.max,
            self.errors,
        );
        for e in &self.errors.examples {
            s.push_str(&format!("  error: {e}\n"));
        }
        s.push_str(&format!(
            "client cpu   {:.3} s user, {:.3} s sys ({:.0} % of {} thread(s))\n",
            self.client_user.as_secs_f64(),
            self.client_sys.as_secs_f64(),
            100.0 * self.client_cpu_s()
                / self.elapsed.as_secs_f64().max(1e-9)
                / self.spec.threads as f64,
            self.spec.threads,
        ));
        if self.saturated() {
            s.push_str(CLIENT_BOUND);
            s.push('\n');
        }
        s
    }
}

/// Printed when the client was the bottleneck.
pub const CLIENT_BOUND: &str =
    "!!! client-bound: the load generator, not the server, was the bottleneck !!!";

/// The two edges of the measured window, reported to [`run_with`]'s hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Every connection is open; the clock starts now.
    Start,
    /// The last connection closed; the clock stopped.
    End,
}

/// Runs one workload to the end.
pub fn run(spec: &LoadSpec) -> Result<LoadResult, String> {
    run_with(spec, &mut |_| {})
}

/// Runs one workload, calling `hook` on the calling thread at the start and
/// end of the measured window (a sampler can take its snapshots there).
pub fn run_with(spec: &LoadSpec, hook: &mut dyn FnMut(Window)) -> Result<LoadResult, String> {
    if spec.conns == 0 || spec.size == 0 || spec.threads == 0 {
        return Err("conns, size and threads must be at least 1".into());
    }
    if let Some(r) = spec.rate
        && !(r.is_finite() && r > 0.0)
    {
        return Err(format!("rate must be a positive number, got {r}"));
    }
    echo_protocol::raise_nofile_limit()
        .map_err(|e| format!("cannot raise the open-files limit: {e}"))?;

    let threads = spec.threads.min(spec.conns);
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let mut starts = Vec::new();
    let mut handles = Vec::new();
    for t in 0..threads {
        // Connection i belongs to thread i % threads; its message share is
        // the even split of the total, the first `total % conns` get one more.
        let ids: Vec<u64> = (t..spec.conns).step_by(threads).map(|i| i as u64).collect();
        let (start_tx, start_rx) = mpsc::channel::<Instant>();
        let ready = ready_tx.clone();
        let spec = *spec;
        let handle = thread::Builder::new()
            .name(format!("load-{t}"))
            .spawn(move || worker(spec, ids, ready, start_rx))
            .map_err(|e| format!("cannot spawn a load thread: {e}"))?;
        starts.push(start_tx);
        handles.push(handle);
    }
    drop(ready_tx);

    // Wait until every thread has opened its connections. A thread that
    // died before reporting would leave us waiting forever, so look.
    let mut ready = 0;
    while ready < threads {
        match ready_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(()) => ready += 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if handles.iter().any(|h| h.is_finished()) {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if ready < threads {
        drop(starts); // the others see the closed channel and return
        for h in handles {
            let _ = h.join();
        }
        return Err("a load thread failed while connecting".into());
    }

    let t0 = Instant::now();
    hook(Window::Start);
    for s in &starts {
        let _ = s.send(t0);
    }

    let mut total = ThreadResult::new();
    for h in handles {
        match h.join() {
            Ok(r) => total.merge(r),
            Err(_) => return Err("a load thread panicked".into()),
        }
    }
    let end = total.finished.unwrap_or_else(Instant::now);
    hook(Window::End);

    Ok(LoadResult {
        spec: *spec,
        messages: total.messages,
        expected_messages: match spec.stop {
            Stop::Messages(m) => Some(m),
            Stop::Duration(_) => None,
        },
        bytes_sent: total.bytes_sent,
        bytes_received: total.bytes_received,
        elapsed: end.saturating_duration_since(t0),
        latency: total.latency,
        errors: total.errors,
        client_user: total.cpu_user,
        client_sys: total.cpu_sys,
    })
}

fn timeval(t: nix::sys::time::TimeVal) -> Duration {
    Duration::new(t.tv_sec().max(0) as u64, (t.tv_usec().max(0) as u32) * 1000)
}

/// What one load thread hands back.
struct ThreadResult {
    messages: u64,
    bytes_sent: u64,
    bytes_received: u64,
    latency: Histogram<u64>,
    errors: Errors,
    finished: Option<Instant>,
    /// CPU this load thread used in the measured window (`RUSAGE_THREAD`):
    /// the generator's own cost, without the `/proc` sampler, which runs in
    /// the same process.
    cpu_user: Duration,
    cpu_sys: Duration,
}

impl ThreadResult {
    fn new() -> ThreadResult {
        ThreadResult {
            messages: 0,
            bytes_sent: 0,
            bytes_received: 0,
            latency: stats::new_histogram(),
            errors: Errors::default(),
            finished: None,
            cpu_user: Duration::ZERO,
            cpu_sys: Duration::ZERO,
        }
    }

    fn merge(&mut self, o: ThreadResult) {
        self.messages += o.messages;
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&o.latency);
        self.errors.merge(o.errors);
        self.finished = self.finished.max(o.finished);
        self.cpu_user += o.cpu_user;
        self.cpu_sys += o.cpu_sys;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not started yet (waiting for a connect slot).
    Idle,
    /// Non-blocking connect in flight.
    Connecting,
    /// Connected; sending and verifying.
    Active,
    /// Write side shut down; reading the rest of the echo up to EOF.
    Closing,
    /// Closed, cleanly or not.
    Done,
}

struct Conn {
    /// Global connection number: seeds the payload pattern.
    id: u64,
    stream: Option<TcpStream>,
    state: State,
    /// Messages this connection sends (`u64::MAX`: until the deadline).
    share: u64,
    /// Messages handed to the socket so far (whole messages).
    issued: u64,
    /// Bytes written so far; always <= issued * size.
    written: u64,
    /// Bytes echoed back and verified.
    received: u64,
    /// Closed loop: when the message in flight was issued.
    sent_at: Instant,
    /// Open loop: this connection's first scheduled send.
    offset: Duration,
    last_progress: Instant,
}

struct Worker {
    spec: LoadSpec,
    size: u64,
    poll: Poll,
    conns: Vec<Conn>,
    wbuf: Vec<u8>,
    rbuf: Vec<u8>,
    ebuf: Vec<u8>,
    result: ThreadResult,
    /// Connections not yet Done.
    live: usize,
    t0: Instant,
    /// Duration mode: no message is issued (closed) or scheduled (open) at or after this.
    deadline: Option<Instant>,
    /// Open loop: time between two messages of one connection.
    interval: Duration,
    /// Open loop: next due time per connection, earliest first.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
}

fn worker(
    spec: LoadSpec,
    ids: Vec<u64>,
    ready: mpsc::Sender<()>,
    start: mpsc::Receiver<Instant>,
) -> ThreadResult {
    let poll = match Poll::new() {
        Ok(p) => p,
        Err(e) => {
            let mut r = ThreadResult::new();
            r.errors
                .add(ErrorKind::Other, format!("cannot create a poller: {e}"));
            return r;
        }
    };
    let now = Instant::now();
    let per_conn_interval = spec
        .rate
        .map(|r| Duration::from_secs_f64(spec.conns as f64 / r))
        .unwrap_or_default();
    let conns = ids
        .into_iter()
        .map(|id| {
            let share = match spec.stop {
                Stop::Messages(m) => {
                    let c = spec.conns as u64;
                    m / c + u64::from(id < m % c)
                }
                Stop::Duration(_) => u64::MAX,
            };
            Conn {
                id,
                stream: None,
                state: State::Idle,
                share,
                issued: 0,
                written: 0,
                received: 0,
                sent_at: now,
                // Spread the first sends evenly over one interval, so the
                // connections do not fire in lockstep.
                offset: per_conn_interval.mul_f64(id as f64 / spec.conns as f64),
                last_progress: now,
            }
        })
        .collect::<Vec<_>>();
    let mut w = Worker {
        spec,
        size: spec.size as u64,
        poll,
        live: conns.len(),
        conns,
        wbuf: vec![0; CHUNK],
        rbuf: vec![0; CHUNK],
        ebuf: vec![0; CHUNK],
        result: ThreadResult::new(),
        t0: now,
        deadline: None,
        interval: per_conn_interval,
        timers: BinaryHeap::new(),
    };
    w.connect_all();
    if ready.send(()).is_err() {
        return w.result;
    }
    let Ok(t0) = start.recv() else {
        return w.result;
    };
    w.t0 = t0;
    let usage0 = getrusage(UsageWho::RUSAGE_THREAD).ok();
    w.deadline = match spec.stop {
        Stop::Duration(d) => Some(t0 + d),
        Stop::Messages(_) => None,
    };
    w.drive();
    w.result.finished = Some(Instant::now());
    if let (Some(a), Ok(b)) = (usage0, getrusage(UsageWho::RUSAGE_THREAD)) {
        w.result.cpu_user = timeval(b.user_time()).saturating_sub(timeval(a.user_time()));
        w.result.cpu_sys = timeval(b.system_time()).saturating_sub(timeval(a.system_time()));
    }
    w.result
}

impl Worker {
    /// Opens every connection, at most [`CONNECT_BATCH`] connects in flight.
    fn connect_all(&mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next = 0;
        let mut in_flight = 0;
        let mut done = 0;
        while done < self.conns.len() {
            while in_flight < CONNECT_BATCH && next < self.conns.len() {
                let idx = next;
                next += 1;
                match TcpStream::connect(self.spec.addr) {
                    Ok(mut s) => {
                        let interest = Interest::READABLE | Interest::WRITABLE;
                        if let Err(e) = self.poll.registry().register(&mut s, Token(idx), interest)
                        {
                            self.connect_failed(idx, format!("register: {e}"));
                            done += 1;
                            continue;
                        }
                        let c = &mut self.conns[idx];
                        c.stream = Some(s);
                        c.state = State::Connecting;
                        c.last_progress = Instant::now();
                        in_flight += 1;
                    }
                    Err(e) => {
                        self.connect_failed(idx, e.to_string());
                        done += 1;
                    }
                }
            }
            if let Err(e) = self
                .poll
                .poll(&mut events, Some(Duration::from_millis(100)))
                && e.kind() != io::ErrorKind::Interrupted
            {
                for idx in 0..self.conns.len() {
                    if matches!(self.conns[idx].state, State::Idle | State::Connecting) {
                        self.connect_failed(idx, format!("poll: {e}"));
                    }
                }
                return;
            }
            for ev in events.iter() {
                let idx = ev.token().0;
                if self.conns[idx].state != State::Connecting {
                    continue;
                }
                let stream = self.conns[idx]
                    .stream
                    .as_ref()
                    .expect("connecting has a stream");
                // mio's recipe: an error or a peer address settles the
                // connect; NotConnected means the event was spurious.
                let outcome = match stream.take_error() {
                    Ok(Some(e)) | Err(e) => Some(Err(e)),
                    Ok(None) => match stream.peer_addr() {
                        Ok(_) => Some(stream.set_nodelay(true)),
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => None,
                        Err(e) => Some(Err(e)),
                    },
                };
                match outcome {
                    None => continue,
                    Some(Ok(())) => self.conns[idx].state = State::Active,
                    Some(Err(e)) => self.connect_failed(idx, e.to_string()),
                }
                in_flight -= 1;
                done += 1;
            }
            let now = Instant::now();
            // Only the started ones can be connecting.
            for idx in 0..next {
                let c = &self.conns[idx];
                if c.state == State::Connecting && now - c.last_progress > STALL_TIMEOUT {
                    self.connect_failed(idx, format!("no answer in {STALL_TIMEOUT:?}"));
                    in_flight -= 1;
                    done += 1;
                }
            }
        }
        // Live stays as the count of connections that may still send.
        self.live = self
            .conns
            .iter()
            .filter(|c| c.state == State::Active)
            .count();
    }

    fn connect_failed(&mut self, idx: usize, why: String) {
        let id = self.conns[idx].id;
        self.close(idx);
        self.result.errors.add(
            ErrorKind::Connect,
            format!("connect #{id} to {}: {why}", self.spec.addr),
        );
    }

    fn close(&mut self, idx: usize) {
        let c = &mut self.conns[idx];
        if let Some(mut s) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        c.state = State::Done;
    }

    fn fail(&mut self, idx: usize, kind: ErrorKind, why: String) {
        if self.conns[idx].state == State::Done {
            return;
        }
        let id = self.conns[idx].id;
        self.close(idx);
        self.live -= 1;
        self.result
            .errors
            .add(kind, format!("connection #{id}: {why}"));
    }

    /// The measured part: runs until every connection is closed.
    fn drive(&mut self) {
        let mut events = Events::with_capacity(1024);
        let open_loop = self.spec.rate.is_some();
        for idx in 0..self.conns.len() {
            if self.conns[idx].state != State::Active {
                continue;
            }
            if open_loop {
                let due = self.t0 + self.conns[idx].offset;
                self.timers.push(Reverse((due, idx)));
            }
            // Closed loop: sends the first message. Either way, a
            // connection with nothing to send half-closes at once.
            self.settle(idx, self.t0);
        }
        // epoll_wait's timeout has millisecond resolution: waking up to
        // 1 ms late would be charged to the server as latency, since it is
        // measured from the schedule. A timerfd wakes us to the microsecond.
        let timer = if open_loop { self.timer() } else { None };
        let mut next_stall_check = Instant::now() + Duration::from_secs(1);
        while self.live > 0 {
            let now = Instant::now();
            let mut timeout = next_stall_check.saturating_duration_since(now);
            if let Some(&Reverse((due, _))) = self.timers.peek() {
                let wait = due.saturating_duration_since(now);
                let armed = !wait.is_zero()
                    && timer.as_ref().is_some_and(|t| {
                        t.set(
                            Expiration::OneShot(TimeSpec::from_duration(wait)),
                            TimerSetTimeFlags::empty(),
                        )
                        .is_ok()
                    });
                if !armed {
                    timeout = timeout.min(wait);
                }
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                for idx in 0..self.conns.len() {
                    self.fail(idx, ErrorKind::Other, format!("poll: {e}"));
                }
                return;
            }
            for ev in events.iter() {
                if ev.token() == TIMER {
                    // Consume the expiry; EAGAIN just means it was stale.
                    if let Some(t) = &timer {
                        let _ = t.wait();
                    }
                    continue;
                }
                let idx = ev.token().0;
                if matches!(self.conns[idx].state, State::Active | State::Closing) {
                    // Edge-triggered: drain reads, then push any pending writes.
                    self.on_readable(idx);
                    self.flush(idx);
                }
            }
            let now = Instant::now();
            while let Some(&Reverse((due, idx))) = self.timers.peek() {
                if due > now {
                    break;
                }
                self.timers.pop();
                self.on_timer(idx, now);
            }
            if now >= next_stall_check {
                next_stall_check = now + Duration::from_secs(1);
                self.check_stalls(now);
            }
        }
    }

    /// A non-blocking timerfd registered under [`TIMER`]; `None` if the
    /// kernel refuses, and the poll timeout serves instead.
    fn timer(&self) -> Option<TimerFd> {
        let t = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .ok()?;
        let fd = t.as_fd().as_raw_fd();
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), TIMER, Interest::READABLE)
            .ok()?;
        Some(t)
    }

    /// Open loop: issue every message whose time has come, re-arm the timer.
    fn on_timer(&mut self, idx: usize, now: Instant) {
        let c = &self.conns[idx];
        if c.state != State::Active {
            return;
        }
        let since = now.saturating_duration_since(self.t0 + c.offset);
        let due = (since.as_secs_f64() / self.interval.as_secs_f64()) as u64 + 1;
        let due = due.min(c.share).min(self.schedulable(c));
        if due > c.issued {
            if c.written == c.received {
                // Idle until now: the stall clock starts with the new work.
                self.conns[idx].last_progress = now;
            }
            self.conns[idx].issued = due;
            self.flush(idx);
        }
        let c = &self.conns[idx];
        if c.state == State::Active && c.issued < c.share.min(self.schedulable(c)) {
            self.timers
                .push(Reverse((self.scheduled(c, c.issued), idx)));
        }
        self.settle(idx, now);
    }

    /// Open loop, duration mode: messages scheduled before the deadline.
    fn schedulable(&self, c: &Conn) -> u64 {
        match self.deadline {
            None => u64::MAX,
            Some(d) => {
                let span = d.saturating_duration_since(self.t0 + c.offset);
                if span.is_zero() {
                    return 0;
                }
                (span.as_secs_f64() / self.interval.as_secs_f64()).ceil() as u64
            }
        }
    }

    /// Open loop: when message `k` of `c` is due.
    fn scheduled(&self, c: &Conn, k: u64) -> Instant {
        self.t0 + c.offset + self.interval.mul_f64(k as f64)
    }

    /// Called whenever a connection has caught up: issue the next message
    /// (closed loop) or, if this connection has nothing more to send,
    /// half-close it.
    fn settle(&mut self, idx: usize, now: Instant) {
        let c = &self.conns[idx];
        if c.state != State::Active || c.received < c.issued * self.size {
            return;
        }
        let more = if self.spec.rate.is_some() {
            c.issued < c.share.min(self.schedulable(c))
        } else {
            c.issued < c.share && self.deadline.is_none_or(|d| now < d)
        };
        if more {
            if self.spec.rate.is_none() {
                let c = &mut self.conns[idx];
                c.issued += 1;
                c.sent_at = now;
                self.flush(idx);
            }
            return;
        }
        let c = &mut self.conns[idx];
        c.state = State::Closing;
        c.last_progress = now;
        let stream = c.stream.as_ref().expect("active has a stream");
        if let Err(e) = stream.shutdown(Shutdown::Write) {
            self.fail_io(idx, "shutdown", e);
            return;
        }
        // The EOF may already be waiting; the edge fired before we asked.
        self.on_readable(idx);
    }

    /// Writes as much of the issued bytes as the socket takes.
    fn flush(&mut self, idx: usize) {
        loop {
            let c = &mut self.conns[idx];
            if c.state != State::Active {
                return;
            }
            let target = c.issued * self.size;
            if c.written >= target {
                return;
            }
            let n = (target - c.written).min(CHUNK as u64) as usize;
            fill(c.id, self.size, c.written, &mut self.wbuf[..n]);
            let stream = c.stream.as_mut().expect("active has a stream");
            match stream.write(&self.wbuf[..n]) {
                Ok(0) => {
                    return self.fail(idx, ErrorKind::Reset, "write returned 0".into());
                }
                Ok(k) => {
                    c.written += k as u64;
                    c.last_progress = Instant::now();
                    self.result.bytes_sent += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail_io(idx, "write", e),
            }
        }
    }

    /// Reads and verifies until the socket would block.
    fn on_readable(&mut self, idx: usize) {
        loop {
            let c = &mut self.conns[idx];
            if !matches!(c.state, State::Active | State::Closing) {
                return;
            }
            let stream = c.stream.as_mut().expect("open has a stream");
            let n = match stream.read(&mut self.rbuf) {
                Ok(0) => {
                    if c.state == State::Closing {
                        // The clean end: everything echoed, then EOF.
                        self.close(idx);
                        self.live -= 1;
                    } else {
                        let why = format!(
                            "closed by the server after {} of {} bytes were echoed",
                            c.received, c.written
                        );
                        self.fail(idx, ErrorKind::Reset, why);
                    }
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.fail_io(idx, "read", e),
            };
            if c.received + n as u64 > c.written {
                let why = format!(
                    "{} bytes came back but only {} were sent",
                    c.received + n as u64,
                    c.written
                );
                return self.fail(idx, ErrorKind::Mismatch, why);
            }
            let expected = &mut self.ebuf[..n];
            fill(c.id, self.size, c.received, expected);
            if let Some(i) = (0..n).find(|&i| expected[i] != self.rbuf[i]) {
                let at = c.received + i as u64;
                let why = format!(
                    "mismatch at stream byte {at} (message {}, byte {}): expected {:#04x}, got {:#04x}",
                    at / self.size,
                    at % self.size,
                    expected[i],
                    self.rbuf[i]
                );
                return self.fail(idx, ErrorKind::Mismatch, why);
            }
            let now = Instant::now();
            let before = c.received / self.size;
            c.received += n as u64;
            c.last_progress = now;
            self.result.bytes_received += n as u64;
            let after = c.received / self.size;
            for k in before..after {
                let start = if self.spec.rate.is_some() {
                    self.scheduled(&self.conns[idx], k)
                } else {
                    self.conns[idx].sent_at
                };
                let us = now.saturating_duration_since(start).as_micros() as u64;
                self.result.latency.saturating_record(us.max(1));
                self.result.messages += 1;
            }
            if after > before {
                self.settle(idx, now);
            }
        }
    }

    fn fail_io(&mut self, idx: usize, op: &str, e: io::Error) {
        let kind = match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => ErrorKind::Reset,
            io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Other,
        };
        self.fail(idx, kind, format!("{op}: {e}"));
    }

    fn check_stalls(&mut self, now: Instant) {
        for idx in 0..self.conns.len() {
            let c = &self.conns[idx];
            let waiting = match c.state {
                State::Closing => true,
                State::Active => c.received < c.issued * self.size,
                _ => false,
            };
            if waiting && now - c.last_progress > STALL_TIMEOUT {
                let why = format!(
                    "no progress for {STALL_TIMEOUT:?} ({} of {} bytes echoed{})",
                    c.received,
                    c.written,
                    if c.state == State::Closing {
                        ", waiting for EOF"
                    } else {
                        ""
                    }
                );
                self.fail(idx, ErrorKind::Timeout, why);
            }
        }
    }
}

/// The payload of connection `conn` from stream offset `offset`: message `k`
/// is 8 bytes of a hash of (conn, k) repeated, each round incremented, so
/// every message of every connection differs from every other.
pub fn fill(conn: u64, size: u64, offset: u64, out: &mut [u8]) {
    let mut off = offset;
    let mut i = 0;
    while i < out.len() {
        let msg = off / size;
        let pos = off % size;
        let n = ((size - pos) as usize).min(out.len() - i);
        let seed = splitmix64(conn.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ msg).to_le_bytes();
        for (j, b) in out[i..i + n].iter_mut().enumerate() {
            let p = pos as usize + j;
            *b = seed[p % 8].wrapping_add((p / 8) as u8);
        }
        i += n;
        off += n as u64;
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_position_independent() {
        // Generating a stream in odd-sized pieces gives the same bytes as
        // generating it at once: partial writes regenerate from an offset.
        let mut whole = vec![0; 1000];
        fill(7, 64, 0, &mut whole);
        let mut pieces = vec![0; 1000];
        let mut off = 0;
        for len in [1, 63, 2, 100, 834] {
            fill(7, 64, off as u64, &mut pieces[off..off + len]);
            off += len;
        }
        assert_eq!(whole, pieces);
    }

    #[test]
    fn pattern_differs_per_connection_and_message() {
        let msg = |conn: u64, k: u64| {
            let mut b = vec![0; 64];
            fill(conn, 64, k * 64, &mut b);
            b
        };
        assert_ne!(msg(1, 0), msg(2, 0));
        assert_ne!(msg(1, 0), msg(1, 1));
        assert_ne!(msg(0, 5), msg(5, 0));
        // not a constant fill inside one message either
        let m = msg(3, 3);
        assert!(m.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn errors_count_and_keep_a_few_examples() {
        let mut e = Errors::default();
        assert_eq!(e.to_string(), "none");
        for i in 0..7 {
            e.add(ErrorKind::Mismatch, format!("m{i}"));
        }
        e.add(ErrorKind::Connect, "c".into());
        assert_eq!(e.total(), 8);
        assert_eq!(e.mismatch, 7);
        assert_eq!(e.examples.len(), ERROR_EXAMPLES);
        assert!(
            e.to_string()
                .starts_with("8 (connect 1, reset 0, mismatch 7")
        );
    }
}
