//! What a workload is and what it measured: the spec, the stop condition,
//! the error counts and the result with its rendering. No syscalls. The
//! client-bound verdict lives here so that every report derives it the same
//! way, from the CPUs the load threads really had (the affinity mask at the
//! start of the run) rather than from the thread count asked for.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::stats::Percentiles;

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
    /// A new connection per message: each of the `conns` slots runs one
    /// conversation after another (connect, one message, half-close, read
    /// the echo up to EOF, close), so the server pays for accept, the
    /// client's setup (a fork, a thread) and the teardown on every message.
    /// Latency then runs from the start of `connect` to the last echoed
    /// byte. Closed loop only.
    pub reconnect: bool,
    /// Idle connections besides the `conns` working ones: opened before the
    /// clock starts, silent for the whole window, closed after it. They
    /// cost a server that looks at every connection on every wake-up
    /// (`select`, `poll`, busy-poll) and nothing to one that is told which
    /// are ready (`epoll`).
    pub idle: usize,
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
        let over = if self.reconnect {
            format!(
                "{} slot(s) opening a new connection per message",
                self.conns
            )
        } else {
            format!("{} connection(s)", self.conns)
        };
        let idle = if self.idle > 0 {
            format!(" beside {} idle connection(s)", self.idle)
        } else {
            String::new()
        };
        format!(
            "{stop} of {} B over {over}{idle} to {}, {lp}, {} thread(s)",
            self.size, self.addr, self.threads
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
    /// No progress for [`STALL_TIMEOUT`](super::STALL_TIMEOUT).
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
    pub(super) fn add(&mut self, kind: ErrorKind, what: String) {
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

    pub(super) fn merge(&mut self, other: Errors) {
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
    /// Open loop: per-message send lag in microseconds, the instant the
    /// message was handed to `write` minus its scheduled time (0 for one
    /// sent early, inside the slack). `None` in the closed loop, which has
    /// no schedule to be late for.
    pub send_lag: Option<Histogram<u64>>,
    /// Everything that went wrong.
    pub errors: Errors,
    /// User CPU time of the load threads over the measured window.
    pub client_user: Duration,
    /// System CPU time of the load threads over the measured window.
    pub client_sys: Duration,
    /// CPUs the load threads could run on: the calling thread's affinity
    /// mask (`sched_getaffinity`) when the run started, which the load
    /// threads inherit.
    pub cpus: usize,
    /// The CPU each load thread was pinned to, by thread; empty when they
    /// all ran on the whole mask (one thread, or one CPU).
    pub thread_cpus: Vec<usize>,
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

    /// Load threads that had connections: `min(threads, conns)`.
    pub fn load_threads(&self) -> usize {
        self.spec.threads.min(self.spec.conns).max(1)
    }

    /// CPUs the load threads could run on (see [`LoadResult::cpus`]).
    pub fn load_cpus(&self) -> usize {
        self.cpus.max(1)
    }

    /// CPU seconds per second the load could use at most: one per load
    /// thread, but no more than the CPUs it was allowed on.
    pub fn capacity(&self) -> usize {
        self.load_threads().min(self.load_cpus())
    }

    /// Client CPU over the window as a fraction of [`LoadResult::capacity`].
    pub fn client_cpu_share(&self) -> f64 {
        self.client_cpu_s() / self.elapsed.as_secs_f64().max(1e-9) / self.capacity() as f64
    }

    /// The load generator used at least 90 % of the CPU it could have had:
    /// the figures then describe the client, not the server.
    pub fn saturated(&self) -> bool {
        self.client_cpu_share() >= 0.9
    }

    /// Client CPU microseconds (user + system) per verified message, next
    /// to which the server's CPU per echo can be read.
    pub fn client_cpu_us_per_msg(&self) -> f64 {
        self.client_cpu_s() * 1e6 / self.messages.max(1) as f64
    }

    /// Send-lag percentiles in microseconds; `None` in the closed loop.
    pub fn send_lag_us(&self) -> Option<Percentiles> {
        self.send_lag.as_ref().map(Percentiles::of)
    }

    /// Why the figures describe the client rather than the server: its
    /// load threads were saturated, or its p99 send lag passed
    /// [`SEND_LAG_BOUND_US`]. Empty when neither.
    pub fn client_bound_reasons(&self) -> Vec<String> {
        let mut why = Vec::new();
        if self.saturated() {
            why.push(format!(
                "load threads used {:.0} % of their CPU",
                100.0 * self.client_cpu_share()
            ));
        }
        if let Some(p) = self.send_lag_us()
            && p.p99 > SEND_LAG_BOUND_US
        {
            why.push(format!(
                "p99 send lag {} µs > {SEND_LAG_BOUND_US} µs",
                p.p99
            ));
        }
        why
    }

    /// True if the run is client-bound (see
    /// [`LoadResult::client_bound_reasons`]).
    pub fn client_bound(&self) -> bool {
        !self.client_bound_reasons().is_empty()
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
             latency µs   p50 {}  p90 {}  p99 {}  p99.9 {}  max {}{}\n\
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
            if self.client_bound() {
                INCLUDES_CLIENT_LAG
            } else {
                ""
            },
            self.errors,
        );
        for e in &self.errors.examples {
            s.push_str(&format!("  error: {e}\n"));
        }
        s.push_str(&format!(
            "client cpu   {:.3} s user, {:.3} s sys = {:.2} µs per message ({:.0} % of {} CPU(s): {} load thread(s), {} CPU(s) allowed)\n",
            self.client_user.as_secs_f64(),
            self.client_sys.as_secs_f64(),
            self.client_cpu_us_per_msg(),
            100.0 * self.client_cpu_share(),
            self.capacity(),
            self.load_threads(),
            self.load_cpus(),
        ));
        s.push_str(&format!("load threads {}\n", self.placement()));
        if let Some(line) = self.render_send_lag() {
            s.push_str(&format!("send lag µs  {line}\n"));
        }
        s.push_str(&self.render_client_bound());
        s
    }

    /// Where the load threads ran, for the report.
    pub fn placement(&self) -> String {
        if self.thread_cpus.is_empty() {
            format!(
                "{} sharing the {} CPU(s) of the load's mask",
                self.load_threads(),
                self.load_cpus()
            )
        } else {
            let each: Vec<String> = self
                .thread_cpus
                .iter()
                .enumerate()
                .map(|(t, c)| format!("load-{t} on CPU {c}"))
                .collect();
            format!("pinned one CPU each: {}", each.join(", "))
        }
    }

    /// Open loop: the send-lag percentiles on one line, with the bound.
    pub fn render_send_lag(&self) -> Option<String> {
        let p = self.send_lag_us()?;
        Some(format!(
            "p50 {}  p90 {}  p99 {}  p99.9 {}  max {} (client-bound above p99 {SEND_LAG_BOUND_US})",
            p.p50, p.p90, p.p99, p.p999, p.max
        ))
    }

    /// The client-bound banner and its reasons, one line; empty if not.
    pub fn render_client_bound(&self) -> String {
        let why = self.client_bound_reasons();
        if why.is_empty() {
            String::new()
        } else {
            format!("{CLIENT_BOUND} ({})\n", why.join("; "))
        }
    }
}

/// The p99 send lag, in microseconds, above which an open-loop run is
/// flagged client-bound. 1 ms: a loopback echo of an unloaded server takes
/// some tens of microseconds here, so a client that sends one message in a
/// hundred a millisecond late adds many round trips to the tail it
/// reports, and that tail then describes the client; below the bound the
/// lag is printed beside the latency, small enough to read past. It is
/// also the resolution of `epoll_wait(2)`'s own timeout, which the load
/// loop's timerfd exists to beat. A bound relative to the measured latency
/// was the alternative not taken: it would excuse a late client exactly
/// when the server is slow as well.
pub const SEND_LAG_BOUND_US: u64 = 1_000;

/// Appended to the latency figures of a client-bound run.
pub const INCLUDES_CLIENT_LAG: &str = "  (includes client lag: client-bound)";

/// Printed when the client was saturated or late. Late does not say why: a
/// load thread that is itself too slow and one that other processes kept
/// off its CPU look the same from inside, so the banner says what is known
/// (the figures are not the server's alone) and the reasons follow it.
pub const CLIENT_BOUND: &str = "!!! client-bound: the load generator was saturated or late, so these figures are not the server's alone !!!";

#[cfg(test)]
mod tests {
    use super::*;

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

    fn result(threads: usize, conns: usize, cpus: usize, cpu_ms: u64) -> LoadResult {
        LoadResult {
            spec: LoadSpec {
                addr: "127.0.0.1:1".parse().unwrap(),
                conns,
                size: 64,
                stop: Stop::Messages(10),
                rate: None,
                threads,
                reconnect: false,
                idle: 0,
            },
            messages: 10,
            expected_messages: Some(10),
            bytes_sent: 640,
            bytes_received: 640,
            elapsed: Duration::from_secs(1),
            latency: crate::stats::new_histogram(),
            send_lag: None,
            errors: Errors::default(),
            client_user: Duration::from_millis(cpu_ms / 2),
            client_sys: Duration::from_millis(cpu_ms - cpu_ms / 2),
            cpus,
            thread_cpus: Vec::new(),
        }
    }

    #[test]
    fn client_bound_is_judged_against_the_cpus_the_load_had() {
        // 4 threads asked for, but pinned to 1 CPU: 0.95 s of CPU per second
        // is the whole capacity.
        let r = result(4, 100, 1, 950);
        assert_eq!(r.capacity(), 1);
        assert!(r.saturated());
        assert!(
            r.render()
                .contains("(95 % of 1 CPU(s): 4 load thread(s), 1 CPU(s) allowed)")
        );
        assert!(r.render().contains(CLIENT_BOUND));
        // 4 threads on 4 CPUs: the same CPU time is a quarter of capacity
        let r = result(4, 100, 4, 950);
        assert_eq!(r.capacity(), 4);
        assert!(!r.saturated());
        assert!(!r.render().contains(CLIENT_BOUND));
        // 4 threads asked for but 1 connection: one thread ran
        let r = result(4, 1, 8, 950);
        assert_eq!((r.load_threads(), r.capacity()), (1, 1));
        assert!(r.saturated());
        // below 90 %
        assert!(!result(1, 1, 1, 850).saturated());
    }

    /// An open-loop result whose send lags are 99 messages at `typical`
    /// µs and one in a hundred at `late` (so p99 is `typical` and p99.9
    /// `late`), or the given share above the bound.
    fn open(lags: &[(u64, u64)], cpu_ms: u64) -> LoadResult {
        let mut h = crate::stats::new_histogram();
        for &(us, n) in lags {
            h.record_n(us, n).unwrap();
        }
        let mut r = result(1, 100, 1, cpu_ms);
        r.spec.rate = Some(1000.0);
        r.send_lag = Some(h);
        r
    }

    #[test]
    fn client_bound_by_send_lag_uses_the_p99_against_the_bound() {
        // 2 % of messages far beyond the bound: p99 is beyond it.
        let r = open(&[(10, 98), (5 * SEND_LAG_BOUND_US, 2)], 100);
        assert!(r.client_bound(), "{}", r.render());
        let why = r.client_bound_reasons();
        assert_eq!(why.len(), 1, "{why:?}");
        assert!(why[0].starts_with("p99 send lag 50"), "{why:?}");
        assert!(r.render().contains(CLIENT_BOUND));
        assert!(r.render().contains(INCLUDES_CLIENT_LAG));
        // 0.5 % late, however late: p99 is within the bound, and so is a
        // p99 exactly at the bound.
        let r = open(&[(10, 995), (50 * SEND_LAG_BOUND_US, 5)], 100);
        assert!(!r.client_bound(), "{}", r.render());
        assert!(!r.render().contains(INCLUDES_CLIENT_LAG));
        assert!(r.render().contains("send lag µs  p50 10  p90 10  p99 10"));
        assert!(!open(&[(SEND_LAG_BOUND_US, 100)], 100).client_bound());
        // Early sends are recorded as 0 and never flag.
        assert!(!open(&[(0, 100)], 100).client_bound());
        // No lag but a saturated thread: flagged for the CPU alone.
        let r = open(&[(0, 100)], 950);
        assert_eq!(r.client_bound_reasons().len(), 1);
        assert!(r.client_bound_reasons()[0].contains("95 % of their CPU"));
        // Both at once: both reasons.
        assert_eq!(
            open(&[(2 * SEND_LAG_BOUND_US, 100)], 950)
                .client_bound_reasons()
                .len(),
            2
        );
    }

    #[test]
    fn closed_loop_has_no_send_lag_and_cpu_per_message_divides_by_messages() {
        let r = result(1, 1, 1, 100);
        assert!(r.send_lag_us().is_none());
        assert!(!r.render().contains("send lag"));
        // 100 ms of CPU over 10 messages
        assert!((r.client_cpu_us_per_msg() - 10_000.0).abs() < 1e-6);
        assert!(r.render().contains("= 10000.00 µs per message"));
    }
}
