//! The load engine: many verified echo connections driven by mio on a few
//! threads, supervised by a watchdog on the calling thread.
//!
//! Syscalls: non-blocking `connect(2)`, `epoll_wait(2)` through mio,
//! `timerfd_settime(2)` for the open loop's schedule, `read(2)`/`write(2)`,
//! `shutdown(2)` for the half-close, `setsockopt` (`TCP_NODELAY`),
//! `setrlimit(2)` for descriptors, `sched_getaffinity(2)` for the CPUs the
//! load may use, `sched_setaffinity(2)` to give each load thread one of
//! them, and `getrusage(RUSAGE_THREAD)` for the client's own CPU time.
//!
//! Design choices and what they cost:
//! - Readiness, not threads: 10,000 connections are 10,000 entries in a
//!   `Vec`, partitioned over `threads` event loops. A thread per connection
//!   would measure the scheduler of the client as much as the server.
//! - Connections are opened in bounded batches before the clock starts
//!   ([`connect`]), so accept cost is not mixed into throughput.
//! - Closed loop by default: one message in flight per connection, the next
//!   one sent when the echo is complete, timed from the moment its first
//!   byte is handed to `write`. Simple, but it measures a server that is
//!   allowed to slow the client down.
//! - Open loop with `rate`: every connection sends on its own staggered
//!   schedule ([`schedule`], integer nanoseconds) whatever the server does,
//!   and latency is taken from the *scheduled* send time, so a stalled
//!   server is charged for the messages it delayed (no coordinated
//!   omission). Echo keeps order, so replies are matched to messages by
//!   byte count.
//! - Every byte is checked against a pattern built once per run
//!   ([`payload`]), by slice comparison, so that verifying 1 MiB messages
//!   does not make the client the bottleneck.
//! - The window's edges are the caller's hook and then the clock at the
//!   start, the clock and then the hook at the end: whatever the hook does
//!   (sampling a server) is never inside the measured time.
//! - A watchdog ends a run that stops making progress with a harness error
//!   naming what was outstanding, rather than hanging: the calling thread
//!   never joins a load thread without a bound.

mod conn;
mod connect;
mod payload;
mod schedule;
mod spec;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use nix::unistd::Pid;

use crate::stats;
use conn::{CHUNK, Conn, State, Worker};
use payload::Payload;
use schedule::Schedule;
pub use spec::{
    ErrorKind, Errors, INCLUDES_CLIENT_LAG, LoadResult, LoadSpec, SEND_LAG_BOUND_US, Stop,
};

/// A connection with outstanding work and no byte moved for this long is
/// counted as a timeout and dropped; the same bound applies to connecting.
/// Generous on purpose: a server that serves one client at a time
/// (`iterative`) leaves the last of 50 connections waiting for the whole
/// run, and that wait is the figure to report, not an error.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// What the watchdog allows beyond [`STALL_TIMEOUT`]: the stall check runs
/// once a second, and a busy 2-core machine delays it further. Generous,
/// because the watchdog is for the harness's own bugs, not slow servers.
const WATCHDOG_MARGIN: Duration = Duration::from_secs(15);
/// How long the watchdog waits for load threads to stop after it fired.
const ABORT_GRACE: Duration = Duration::from_secs(5);
/// How often the calling thread looks at the load threads.
const TICK: Duration = Duration::from_millis(100);
/// The token of the open loop's timerfd; connection tokens are indices.
const TIMER: Token = Token(usize::MAX - 1);
/// Messages due within this many nanoseconds of a wake-up are sent with
/// it rather than slept for. Going back to sleep costs a
/// `timerfd_settime(2)`, an `epoll_wait(2)` that blocks and a context
/// switch each way, several microseconds of client CPU here, and wakes
/// later than asked anyway; at 20,000 messages/s spread evenly the
/// deadlines are 50 µs apart, so this slack sends two per wake-up, and at
/// 50,000/s three. A message sent early is timed from its send, not from
/// its schedule (see `Conn::sent_at`), so the slack never shortens a
/// latency; it only moves a send up to 50 µs earlier than scheduled, which
/// at one message per connection every 0.2 s or more leaves the offered
/// load unchanged. A smaller slack was the alternative: it keeps bursts
/// smaller but gives back the wake-ups.
pub(crate) const EXPIRY_SLACK_NS: u64 = 50_000;
/// Timers handled per wake-up at most: with 19,000 connections many can be
/// due at once, and the loop should go back to `epoll_wait` (reads, the
/// watchdog) regularly rather than issue every due message first.
const EXPIRIES_PER_WAKE: usize = 1024;

/// The two edges of the measured window, reported to [`run_with`]'s hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Every connection is open; the clock starts right after the hook.
    Start,
    /// The last connection closed; the clock stopped right before the hook.
    End,
}

/// Runs one workload to the end.
pub fn run(spec: &LoadSpec) -> Result<LoadResult, String> {
    run_with(spec, &mut |_| {})
}

/// Runs one workload, calling `hook` on the calling thread at the start and
/// end of the measured window (a sampler can take its snapshots there). The
/// hook's own time is outside the window.
pub fn run_with(spec: &LoadSpec, hook: &mut dyn FnMut(Window)) -> Result<LoadResult, String> {
    if spec.conns == 0 || spec.size == 0 || spec.threads == 0 {
        return Err("conns, size and threads must be at least 1".into());
    }
    let schedule = spec
        .rate
        .map(|r| Schedule::new(spec.conns as u64, r))
        .transpose()?;
    echo_protocol::raise_nofile_limit()
        .map_err(|e| format!("cannot raise the open-files limit: {e}"))?;
    // Opened first and held by this thread until the window has closed.
    let idle_conns = open_idle(spec)?;
    // Read before spawning: the load threads inherit this thread's mask.
    let allowed = affinity_cpus();
    let cpus = allowed.len();
    let payload = Payload::new(spec.size);

    let threads = spec.threads.min(spec.conns);
    let placement = spread(threads, &allowed);
    let base = Instant::now();
    let abort = Arc::new(AtomicBool::new(false));
    let (report_tx, report_rx) = mpsc::channel::<(usize, Report)>();
    let mut crew = Crew {
        handles: Vec::new(),
        beacons: Vec::new(),
        starts: Vec::new(),
        rx: report_rx,
        abort: abort.clone(),
        results: Vec::new(),
    };
    for t in 0..threads {
        // Connection i belongs to thread i % threads; its message share is
        // the even split of the total, the first `total % conns` get one more.
        let ids: Vec<u64> = (t..spec.conns).step_by(threads).map(|i| i as u64).collect();
        let (start_tx, start_rx) = mpsc::channel::<Instant>();
        let beacon = Arc::new(Beacon {
            base,
            progress_ns: AtomicU64::new(0),
        });
        let setup = Setup {
            spec: *spec,
            ids,
            payload: payload.clone(),
            schedule,
            abort: abort.clone(),
            beacon: beacon.clone(),
            start: start_rx,
        };
        let tx = report_tx.clone();
        let cpu = placement.get(t).copied();
        let handle = thread::Builder::new()
            .name(format!("load-{t}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    pin_to(cpu);
                }
                let r = worker(setup, |r| {
                    let _ = tx.send((t, r));
                });
                let _ = tx.send((t, Report::Done(Box::new(r))));
            });
        match handle {
            Ok(h) => {
                crew.handles.push(Some(h));
                crew.beacons.push(beacon);
                crew.starts.push(start_tx);
                crew.results.push(None);
            }
            Err(e) => {
                crew.abort();
                return Err(format!("cannot spawn a load thread: {e}"));
            }
        }
    }
    drop(report_tx);

    // Connecting: a thread is healthy while connects keep settling; each
    // one gives up after STALL_TIMEOUT by itself.
    crew.wait(
        Phase::Ready,
        &Limit {
            idle: STALL_TIMEOUT + WATCHDOG_MARGIN,
            until: None,
            what: "while connecting".into(),
        },
    )?;

    hook(Window::Start);
    let t0 = Instant::now();
    for s in &crew.starts {
        let _ = s.send(t0);
    }
    // The longest a healthy thread goes without a byte moving: a stalled
    // connection is failed after STALL_TIMEOUT, and in the open loop a
    // connection may legitimately sit idle for one interval between sends.
    let idle = STALL_TIMEOUT
        + WATCHDOG_MARGIN
        + schedule.map_or(Duration::ZERO, |s| Duration::from_nanos(s.interval_ns()));
    let limit = match spec.stop {
        Stop::Duration(d) => Limit {
            idle,
            until: Some(t0 + d + STALL_TIMEOUT + WATCHDOG_MARGIN),
            what: format!(
                "past the {:.1} s duration plus {:?}",
                d.as_secs_f64(),
                STALL_TIMEOUT + WATCHDOG_MARGIN
            ),
        },
        Stop::Messages(_) => Limit {
            idle,
            until: None,
            what: String::new(),
        },
    };
    crew.wait(Phase::Done, &limit)?;

    let mut total = ThreadResult::new();
    for r in crew.results.iter_mut() {
        total.merge(r.take().expect("wait(Done) leaves every result"));
    }
    let end = total.finished.unwrap_or_else(Instant::now);
    hook(Window::End);
    drop(idle_conns);
    // Every thread has reported and has nothing left to do but exit; join
    // those that have, and leave the rest detached rather than wait on a
    // join without a bound.
    for h in crew.handles.iter_mut().filter_map(Option::take) {
        if h.is_finished() {
            let _ = h.join();
        }
    }

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
        send_lag: schedule.map(|_| total.send_lag),
        errors: total.errors,
        client_user: total.cpu_user,
        client_sys: total.cpu_sys,
        cpus,
        thread_cpus: placement,
    })
}

/// Where each of `threads` load threads runs, given the CPUs the calling
/// thread may use (which `run` has already narrowed to the CPUs not given
/// to the server): one CPU each, in turn, when there are several threads
/// and several CPUs, so that the connections' work (partitioned over the
/// threads) is spread over the CPUs; empty, leaving every thread on the
/// whole mask, when there is one thread or one CPU and pinning would
/// change nothing. Leaving several threads to the scheduler was the
/// alternative: it may stack two event loops on one CPU for a whole run.
fn spread(threads: usize, allowed: &[usize]) -> Vec<usize> {
    if threads < 2 || allowed.len() < 2 {
        return Vec::new();
    }
    (0..threads).map(|t| allowed[t % allowed.len()]).collect()
}

/// Pins the calling load thread to `cpu`; on failure it stays on the mask
/// it inherited, which is still correct, only less even.
fn pin_to(cpu: usize) {
    let mut one = CpuSet::new();
    if one.set(cpu).is_ok() {
        let _ = sched_setaffinity(Pid::from_raw(0), &one);
    }
}

/// How long one idle connection may take to open.
const IDLE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The spec's idle connections: plain blocking connects from this thread,
/// one after another (the kernel completes each from the listen backlog,
/// whether or not the server accepts it yet). Nothing is ever written on
/// them; they are closed when the returned `Vec` is dropped.
fn open_idle(spec: &LoadSpec) -> Result<Vec<std::net::TcpStream>, String> {
    (0..spec.idle)
        .map(|i| {
            std::net::TcpStream::connect_timeout(&spec.addr, IDLE_CONNECT_TIMEOUT).map_err(|e| {
                format!(
                    "cannot open idle connection {} of {} to {}: {e}",
                    i + 1,
                    spec.idle,
                    spec.addr
                )
            })
        })
        .collect()
}

/// The CPUs in the calling thread's affinity mask; CPUs 0 to the
/// machine's parallelism if the mask cannot be read.
fn affinity_cpus() -> Vec<usize> {
    let cpus: Vec<usize> = match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&i| set.is_set(i).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    };
    if cpus.is_empty() {
        (0..thread::available_parallelism().map_or(1, |n| n.get())).collect()
    } else {
        cpus
    }
}

/// What a load thread tells the calling thread.
enum Report {
    /// Every connection of the thread is settled (open or failed).
    Ready,
    /// The thread is finished; nothing follows.
    Done(Box<ThreadResult>),
}

/// A load thread's "still making progress" stamp, read by the watchdog.
struct Beacon {
    base: Instant,
    /// Nanoseconds from `base` to the last progress.
    progress_ns: AtomicU64,
}

impl Beacon {
    fn stamp(&self, now: Instant) {
        let ns = now.saturating_duration_since(self.base).as_nanos();
        self.progress_ns
            .store(u64::try_from(ns).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn idle(&self, now: Instant) -> Duration {
        let last = self.base + Duration::from_nanos(self.progress_ns.load(Ordering::Relaxed));
        now.saturating_duration_since(last)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ready,
    Done,
}

/// When the watchdog fires: a thread made no progress for `idle`, or the
/// clock passed `until`.
struct Limit {
    idle: Duration,
    until: Option<Instant>,
    /// Says what `until` is, for the message.
    what: String,
}

/// The calling thread's view of the load threads.
struct Crew {
    handles: Vec<Option<JoinHandle<()>>>,
    beacons: Vec<Arc<Beacon>>,
    starts: Vec<mpsc::Sender<Instant>>,
    rx: mpsc::Receiver<(usize, Report)>,
    abort: Arc<AtomicBool>,
    results: Vec<Option<ThreadResult>>,
}

impl Crew {
    /// Waits, in ticks, until every thread reached `phase`; fires the
    /// watchdog if `limit` is passed, and reports a thread that ended early
    /// or died.
    fn wait(&mut self, phase: Phase, limit: &Limit) -> Result<(), String> {
        let n = self.handles.len();
        let mut reached: Vec<bool> = self.results.iter().map(Option::is_some).collect();
        loop {
            if reached.iter().all(|&r| r) {
                return Ok(());
            }
            // Disconnected means every thread is gone; the checks below
            // then name the one that left no report.
            if let Ok((t, r)) = self.rx.recv_timeout(TICK) {
                self.take(t, r, phase, &mut reached)?;
            }
            let now = Instant::now();
            for t in 0..n {
                if reached[t] {
                    continue;
                }
                if self.handles[t].as_ref().is_none_or(|h| h.is_finished()) {
                    // A report sent just before exiting is already queued.
                    while let Ok((u, r)) = self.rx.try_recv() {
                        self.take(u, r, phase, &mut reached)?;
                    }
                    if !reached[t] {
                        self.abort();
                        return Err(format!("harness error: load thread load-{t} panicked"));
                    }
                    continue;
                }
                let idle = self.beacons[t].idle(now);
                let why = if idle > limit.idle {
                    Some(format!(
                        "load-{t} made no progress for {:.1} s{}",
                        idle.as_secs_f64(),
                        if phase == Phase::Ready {
                            " while connecting"
                        } else {
                            ""
                        }
                    ))
                } else {
                    limit
                        .until
                        .filter(|&u| now > u)
                        .map(|_| format!("load-{t} still running {}", limit.what))
                };
                if let Some(why) = why {
                    return Err(self.fire(why));
                }
            }
        }
    }

    /// Books one report. A thread that is done before the window opened
    /// could not even create its poller: the run cannot go on.
    fn take(
        &mut self,
        t: usize,
        report: Report,
        phase: Phase,
        reached: &mut [bool],
    ) -> Result<(), String> {
        reached[t] = true;
        let Report::Done(r) = report else {
            return Ok(());
        };
        let first = r.errors.examples.first().cloned();
        self.results[t] = Some(*r);
        if phase == Phase::Ready {
            self.abort();
            return Err(format!(
                "a load thread failed while connecting{}",
                first.map(|e| format!(": {e}")).unwrap_or_default()
            ));
        }
        Ok(())
    }

    /// Tells every thread to stop and releases those waiting for the start.
    fn abort(&mut self) {
        self.abort.store(true, Ordering::Relaxed);
        self.starts.clear();
    }

    /// The watchdog: stop every thread, wait a bounded time for what each
    /// still had to do, and describe it.
    fn fire(&mut self, why: String) -> String {
        let fired = Instant::now();
        self.abort();
        let mut stopped = Vec::new();
        let mut pending: Vec<usize> = (0..self.handles.len())
            .filter(|&t| self.results[t].is_none())
            .collect();
        while !pending.is_empty() {
            let left = ABORT_GRACE.saturating_sub(fired.elapsed());
            match self.rx.recv_timeout(left.min(TICK)) {
                Ok((t, Report::Done(r))) => {
                    if let Some(s) = &r.stopped {
                        stopped.push(format!("load-{t}: {s}"));
                    }
                    pending.retain(|&u| u != t);
                }
                Ok((_, Report::Ready)) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) if left.is_zero() => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        let mut msg = format!("harness error: watchdog: {why}");
        if !stopped.is_empty() {
            msg.push_str(&format!("; outstanding: {}", stopped.join("; ")));
        }
        if !pending.is_empty() {
            let names: Vec<String> = pending.iter().map(|t| format!("load-{t}")).collect();
            msg.push_str(&format!(
                "; {} did not stop within {ABORT_GRACE:?} of the abort",
                names.join(", ")
            ));
        }
        // Threads that did not stop are left detached: joining them could
        // wait for ever, and the caller is about to report the error.
        msg
    }
}

/// What one load thread hands back.
struct ThreadResult {
    messages: u64,
    bytes_sent: u64,
    bytes_received: u64,
    latency: Histogram<u64>,
    /// Open loop: how late each message was issued, in microseconds.
    send_lag: Histogram<u64>,
    errors: Errors,
    finished: Option<Instant>,
    /// CPU this load thread used in the measured window (`RUSAGE_THREAD`):
    /// the generator's own cost, without whatever else runs in the process
    /// (a sampler, the watchdog).
    cpu_user: Duration,
    cpu_sys: Duration,
    /// Set when the watchdog stopped the thread: what it still had to do.
    stopped: Option<String>,
}

impl ThreadResult {
    fn new() -> ThreadResult {
        ThreadResult {
            messages: 0,
            bytes_sent: 0,
            bytes_received: 0,
            latency: stats::new_histogram(),
            send_lag: stats::new_histogram(),
            errors: Errors::default(),
            finished: None,
            cpu_user: Duration::ZERO,
            cpu_sys: Duration::ZERO,
            stopped: None,
        }
    }

    fn merge(&mut self, o: ThreadResult) {
        self.messages += o.messages;
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&o.latency);
        let _ = self.send_lag.add(&o.send_lag);
        self.errors.merge(o.errors);
        self.finished = self.finished.max(o.finished);
        self.cpu_user += o.cpu_user;
        self.cpu_sys += o.cpu_sys;
    }
}

/// Everything a load thread starts from.
struct Setup {
    spec: LoadSpec,
    ids: Vec<u64>,
    payload: Payload,
    schedule: Option<Schedule>,
    abort: Arc<AtomicBool>,
    beacon: Arc<Beacon>,
    start: mpsc::Receiver<Instant>,
}

fn timeval(t: nix::sys::time::TimeVal) -> Duration {
    Duration::new(t.tv_sec().max(0) as u64, (t.tv_usec().max(0) as u32) * 1000)
}

/// One load thread: connect, report ready, wait for the start, drive.
fn worker(setup: Setup, report: impl Fn(Report)) -> ThreadResult {
    let Setup {
        spec,
        ids,
        payload,
        schedule,
        abort,
        beacon,
        start,
    } = setup;
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
    beacon.stamp(now);
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
                cap: share,
                issued: 0,
                written: 0,
                received: 0,
                sent_at: now,
                batch_first: 0,
                last_progress: now,
            }
        })
        .collect::<Vec<_>>();
    let mut w = Worker {
        spec,
        size: payload.size(),
        poll,
        live: conns.len(),
        conns,
        payload,
        wbuf: vec![0; CHUNK],
        rbuf: vec![0; CHUNK],
        result: ThreadResult::new(),
        t0: now,
        deadline_ns: None,
        schedule,
        timers: BinaryHeap::new(),
        abort,
        beacon,
        moved: false,
        opened: 0,
    };
    w.connect_all();
    if w.aborted() {
        w.result.stopped = Some(format!("connecting: {}", w.outstanding(0)));
        return w.result;
    }
    report(Report::Ready);
    let Ok(t0) = start.recv() else {
        // The run was called off before the window opened.
        return w.result;
    };
    w.t0 = t0;
    w.beacon.stamp(Instant::now());
    let usage0 = getrusage(UsageWho::RUSAGE_THREAD).ok();
    w.deadline_ns = match spec.stop {
        Stop::Duration(d) => Some(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
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
    /// The measured part: runs until every connection is closed, or the
    /// watchdog says stop.
    fn drive(&mut self) {
        let mut events = Events::with_capacity(1024);
        for idx in 0..self.conns.len() {
            if self.spec.reconnect {
                let now = Instant::now();
                if self.more_to_send(idx, now) {
                    self.open_next(idx, now);
                } else {
                    self.conns[idx].state = State::Done;
                    self.live -= 1;
                }
                continue;
            }
            if self.conns[idx].state != State::Active {
                continue;
            }
            if let Some(s) = self.schedule {
                let c = &mut self.conns[idx];
                if let Some(d) = self.deadline_ns {
                    c.cap = c.cap.min(s.schedulable(c.id, d));
                }
                if c.cap > 0 {
                    self.timers.push(Reverse((s.offset_ns(c.id), idx)));
                }
            }
            // Closed loop: sends the first message. Either way, a
            // connection with nothing to send half-closes at once.
            self.settle(idx, Instant::now());
        }
        // epoll_wait's timeout has millisecond resolution: waking up to
        // 1 ms late would be charged to the server as latency, since it is
        // measured from the schedule. A timerfd wakes us to the microsecond.
        let timer = if self.schedule.is_some() {
            self.timer()
        } else {
            None
        };
        let mut next_stall_check = Instant::now() + Duration::from_secs(1);
        // The deadline (ns from t0) the timerfd is set for, if any: it is
        // set again only when the earliest deadline changes, not on every
        // wake-up (a socket's event leaves the timer as it was).
        let mut armed: Option<u64> = None;
        while self.live > 0 {
            if self.aborted() {
                let now_ns = self.ns_since_t0(Instant::now());
                self.result.stopped = Some(self.outstanding(now_ns));
                return;
            }
            let now = Instant::now();
            let mut timeout = next_stall_check.saturating_duration_since(now);
            if let Some(&Reverse((due, _))) = self.timers.peek() {
                let wait = (self.t0 + Duration::from_nanos(due)).saturating_duration_since(now);
                if wait <= Duration::from_nanos(EXPIRY_SLACK_NS) {
                    // Due within the slack: collect events without
                    // sleeping, then send it with this wake-up's batch.
                    timeout = Duration::ZERO;
                } else if armed != Some(due) {
                    let set = timer.as_ref().is_some_and(|t| {
                        t.set(
                            Expiration::OneShot(TimeSpec::from_duration(wait)),
                            TimerSetTimeFlags::empty(),
                        )
                        .is_ok()
                    });
                    armed = set.then_some(due);
                }
                if armed != Some(due) {
                    timeout = timeout.min(wait);
                }
            }
            // The watchdog's abort must be seen within a tick or so even
            // when nothing is due: never block for more than a second.
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                for idx in 0..self.conns.len() {
                    self.fail(idx, ErrorKind::Other, format!("poll: {e}"));
                }
                return;
            }
            for ev in events.iter() {
                if self.aborted() {
                    break;
                }
                if ev.token() == TIMER {
                    // Not read: the timerfd is registered edge-triggered
                    // (as mio registers everything), and every expiry wakes
                    // epoll again whether or not the count of the last one
                    // was consumed, so the `read(2)` that would clear it is
                    // a system call per wake-up for nothing.
                    armed = None;
                    continue;
                }
                let idx = ev.token().0;
                if self.conns[idx].state == State::Connecting {
                    self.on_connect_event(idx);
                }
                if matches!(self.conns[idx].state, State::Active | State::Closing) {
                    // Edge-triggered: read (to the end if the peer closed
                    // or failed), then push any pending writes.
                    let drain = ev.is_read_closed() || ev.is_error();
                    self.on_readable(idx, drain);
                    self.flush(idx);
                }
            }
            // One horizon both pops and counts: every entry pushed while
            // handling it is due strictly later (the schedule's invariant),
            // so this loop ends; the cap returns to epoll_wait regularly.
            let now = Instant::now();
            let horizon_ns = self.ns_since_t0(now).saturating_add(EXPIRY_SLACK_NS);
            let mut expired = 0;
            while expired < EXPIRIES_PER_WAKE && !self.aborted() {
                match self.timers.peek() {
                    Some(&Reverse((due, idx))) if due <= horizon_ns => {
                        self.timers.pop();
                        self.on_timer(idx, horizon_ns, now);
                        expired += 1;
                    }
                    _ => break,
                }
            }
            if now >= next_stall_check {
                next_stall_check = now + Duration::from_secs(1);
                self.check_stalls(now);
            }
            if self.moved {
                self.beacon.stamp(now);
                self.moved = false;
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener};
    use std::sync::Mutex;

    /// A thread-per-connection echo server on a free port, for as long as
    /// the test process lives.
    fn echo_server() -> SocketAddr {
        counting_echo_server().0
    }

    /// Peers of the connections a [`counting_echo_server`] accepted, and
    /// of those whose client had half-closed (recorded before the server
    /// closes, so before that client can see its EOF).
    struct Seen {
        accepted: Mutex<Vec<SocketAddr>>,
        ended: Mutex<Vec<SocketAddr>>,
    }

    /// The same, recording what it saw.
    fn counting_echo_server() -> (SocketAddr, Arc<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let seen = Arc::new(Seen {
            accepted: Mutex::new(Vec::new()),
            ended: Mutex::new(Vec::new()),
        });
        let record = seen.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let Ok(peer) = conn.peer_addr() else { continue };
                record.accepted.lock().unwrap().push(peer);
                let record = record.clone();
                thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = conn.read(&mut buf) {
                        if conn.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                    record.ended.lock().unwrap().push(peer);
                });
            }
        });
        (addr, seen)
    }

    #[test]
    fn load_threads_are_spread_one_per_cpu_in_turn() {
        assert_eq!(spread(1, &[1, 2, 3]), Vec::<usize>::new());
        assert_eq!(spread(4, &[1]), Vec::<usize>::new());
        assert_eq!(spread(3, &[1, 2, 3]), [1, 2, 3]);
        assert_eq!(spread(5, &[2, 5]), [2, 5, 2, 5, 2]);
    }

    #[test]
    fn reconnect_mode_opens_one_connection_per_message_and_verifies_each() {
        let (addr, seen) = counting_echo_server();
        let spec = LoadSpec {
            addr,
            conns: 3,
            size: 100,
            stop: Stop::Messages(31),
            rate: None,
            threads: 1,
            reconnect: true,
            idle: 0,
        };
        let r = run(&spec).expect("run");
        assert!(r.ok(), "{}", r.render());
        assert_eq!(r.messages, 31);
        assert_eq!((r.bytes_sent, r.bytes_received), (3100, 3100));
        // Every message had a connection of its own; the server has seen
        // each of them by the time its echo came back, from source
        // addresses taken in turn (each with a port space of its own).
        let peers = seen.accepted.lock().unwrap().clone();
        assert_eq!(peers.len(), 31);
        let sources: std::collections::HashSet<_> = peers.iter().map(|p| p.ip()).collect();
        assert_eq!(sources.len(), 31, "{peers:?}");
    }

    #[test]
    fn idle_connections_are_opened_first_and_kept_through_the_window() {
        let (addr, seen) = counting_echo_server();
        let spec = LoadSpec {
            addr,
            conns: 2,
            size: 16,
            stop: Stop::Messages(20),
            rate: None,
            threads: 1,
            reconnect: false,
            idle: 5,
        };
        let mut at_end = (0, 0);
        let r = run_with(&spec, &mut |w| {
            if w == Window::End {
                at_end = (
                    seen.accepted.lock().unwrap().len(),
                    seen.ended.lock().unwrap().len(),
                );
            }
        })
        .expect("run");
        assert!(r.ok(), "{}", r.render());
        assert_eq!(r.messages, 20);
        // When the window closed the server had seen all seven, and only
        // the two working ones had ended: the idle five were still open.
        assert_eq!(at_end, (7, 2));
        assert!(spec.describe().contains("beside 5 idle connection(s)"));
    }

    #[test]
    fn reconnect_mode_counts_a_refused_connect_and_ends_the_slot() {
        // A port nobody listens on: bind, read the port, close.
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind");
        let spec = LoadSpec {
            addr,
            conns: 2,
            size: 8,
            stop: Stop::Messages(10),
            rate: None,
            threads: 1,
            reconnect: true,
            idle: 0,
        };
        let r = run(&spec).expect("a refused connect is a counted error, not a harness error");
        assert_eq!((r.messages, r.errors.connect), (0, 2), "{}", r.render());
        assert!(!r.ok());
    }

    #[test]
    fn hook_time_is_outside_the_window() {
        let spec = LoadSpec {
            addr: echo_server(),
            conns: 2,
            size: 64,
            stop: Stop::Messages(20),
            rate: None,
            threads: 1,
            reconnect: false,
            idle: 0,
        };
        let mut start_left = None;
        let mut end_entered = None;
        let r = run_with(&spec, &mut |w| match w {
            Window::Start => {
                // A slow sampler: if the clock started before the hook,
                // these 200 ms would be inside `elapsed`.
                thread::sleep(Duration::from_millis(200));
                start_left = Some(Instant::now());
            }
            Window::End => {
                end_entered = Some(Instant::now());
                thread::sleep(Duration::from_millis(200));
            }
        })
        .expect("run");
        assert!(r.ok(), "{}", r.render());
        let between = end_entered.unwrap() - start_left.unwrap();
        assert!(
            r.elapsed <= between,
            "elapsed {:?} includes hook time (hooks {:?} apart)",
            r.elapsed,
            between
        );
        assert!(r.cpus >= 1 && r.capacity() == 1);
    }

    /// A crew of one fake load thread that never stamps its beacon;
    /// `obeys` says whether it stops when the watchdog aborts.
    fn stuck_crew(obeys: bool) -> (Crew, Arc<AtomicBool>) {
        let abort = Arc::new(AtomicBool::new(false));
        let release = Arc::new(AtomicBool::new(false));
        let beacon = Arc::new(Beacon {
            base: Instant::now(),
            progress_ns: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel();
        let (a, rel) = (abort.clone(), release.clone());
        let handle = thread::spawn(move || {
            // Bounded either way: the test releases it at the end.
            while !(rel.load(Ordering::Relaxed) || obeys && a.load(Ordering::Relaxed)) {
                thread::park_timeout(Duration::from_millis(10));
            }
            let mut r = ThreadResult::new();
            r.stopped = Some("3 connection(s) open".into());
            let _ = tx.send((0, Report::Done(Box::new(r))));
        });
        let crew = Crew {
            handles: vec![Some(handle)],
            beacons: vec![beacon],
            starts: Vec::new(),
            rx,
            abort,
            results: vec![None],
        };
        (crew, release)
    }

    fn short_limit() -> Limit {
        Limit {
            idle: Duration::from_millis(300),
            until: None,
            what: String::new(),
        }
    }

    #[test]
    fn watchdog_ends_a_thread_without_progress_and_says_what_was_left() {
        let (mut crew, release) = stuck_crew(true);
        let err = crew
            .wait(Phase::Done, &short_limit())
            .expect_err("no progress must end the wait");
        release.store(true, Ordering::Relaxed);
        assert!(crew.abort.load(Ordering::Relaxed));
        assert!(
            err.starts_with("harness error: watchdog: load-0 made no progress for"),
            "{err}"
        );
        assert!(
            err.ends_with("; outstanding: load-0: 3 connection(s) open"),
            "{err}"
        );
    }

    #[test]
    fn watchdog_does_not_wait_for_ever_on_a_thread_that_ignores_it() {
        let (mut crew, release) = stuck_crew(false);
        let started = Instant::now();
        let err = crew
            .wait(Phase::Done, &short_limit())
            .expect_err("no progress must end the wait");
        let waited = started.elapsed();
        release.store(true, Ordering::Relaxed);
        assert!(err.contains("load-0 did not stop within 5s"), "{err}");
        // bounded: the idle limit plus the grace, with room for a busy machine
        assert!(waited < ABORT_GRACE + Duration::from_secs(20), "{waited:?}");
    }

    #[test]
    fn watchdog_fires_past_the_hard_limit_even_with_progress() {
        let (mut crew, release) = stuck_crew(true);
        drop(release); // the fake thread stops on the abort
        let (beacon, abort) = (crew.beacons[0].clone(), crew.abort.clone());
        let stamper = thread::spawn(move || {
            // Keeps the thread looking busy until the watchdog aborts.
            while !abort.load(Ordering::Relaxed) {
                beacon.stamp(Instant::now());
                thread::park_timeout(Duration::from_millis(10));
            }
        });
        let limit = Limit {
            idle: Duration::from_secs(60),
            until: Some(Instant::now() + Duration::from_millis(300)),
            what: "past the test's limit".into(),
        };
        let err = crew.wait(Phase::Done, &limit).expect_err("past the limit");
        assert!(
            err.starts_with("harness error: watchdog: load-0 still running past the test's limit"),
            "{err}"
        );
        stamper.join().expect("stamper");
    }
}
