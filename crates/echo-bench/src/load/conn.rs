//! One load thread's connections and their state machine: issue a message
//! (closed loop: when the previous echo is complete; open loop: when the
//! schedule says so), flush what the socket takes, read and verify the echo,
//! settle (next message or half-close), close. Syscalls: `read(2)`,
//! `write(2)` and `shutdown(2)` on non-blocking sockets registered
//! edge-triggered with mio (`epoll_ctl(2)`). The trade-off: a connection is
//! a plain struct indexed by its mio token, so 19,000 of them are one `Vec`
//! and no allocation per message, at the price of every method taking an
//! index rather than a borrow (the worker owns the poller, the buffers and
//! the connections at once). Echo keeps order, so replies are matched to
//! messages by byte count, never by framing.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use mio::Poll;
use mio::net::TcpStream;

use super::payload::Payload;
use super::schedule::Schedule;
use super::spec::{ErrorKind, LoadSpec};
use super::{Beacon, STALL_TIMEOUT, ThreadResult};

/// Bytes moved per `read`/`write` call at most.
pub(super) const CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
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

/// Where an open-loop message's latency starts: its scheduled time, so
/// that a server that stalls is charged for every message it delayed (no
/// coordinated omission), and a client that sent late has its lag in the
/// figure (reported beside it as send lag); but its send instant when it
/// was sent early, inside the slack, since a reply that came back before
/// the schedule said "send" would otherwise count as no latency at all.
/// `sent` is `None` when the send instant is no longer known (an older
/// batch of the same connection); the schedule then stands.
pub(super) fn open_loop_start(due: Instant, sent: Option<Instant>) -> Instant {
    match sent {
        Some(sent) if sent < due => sent,
        _ => due,
    }
}

pub(super) struct Conn {
    /// Global connection number: seeds the payload and the schedule.
    pub(super) id: u64,
    pub(super) stream: Option<TcpStream>,
    pub(super) state: State,
    /// Messages this connection sends (`u64::MAX`: until the deadline).
    pub(super) share: u64,
    /// Open loop: messages it will send in all, `share` capped by what the
    /// schedule fits before the deadline; set when the window opens.
    pub(super) cap: u64,
    /// Messages handed to the socket so far (whole messages).
    pub(super) issued: u64,
    /// Bytes written so far; always <= issued * size.
    pub(super) written: u64,
    /// Bytes echoed back and verified.
    pub(super) received: u64,
    /// Closed loop: when the first byte of the message in flight was
    /// handed to `write`. Open loop: when the latest batch (messages
    /// `batch_first..issued`) was issued, which may be up to
    /// [`EXPIRY_SLACK_NS`](super::EXPIRY_SLACK_NS) before a message's
    /// scheduled time.
    pub(super) sent_at: Instant,
    /// Open loop: the first message of the latest batch.
    pub(super) batch_first: u64,
    pub(super) last_progress: Instant,
}

/// One load thread: its poller, its connections and what it measured.
pub(super) struct Worker {
    pub(super) spec: LoadSpec,
    pub(super) size: u64,
    pub(super) poll: Poll,
    pub(super) conns: Vec<Conn>,
    pub(super) payload: Payload,
    pub(super) wbuf: Vec<u8>,
    pub(super) rbuf: Vec<u8>,
    pub(super) result: ThreadResult,
    /// Connections not yet Done.
    pub(super) live: usize,
    pub(super) t0: Instant,
    /// Duration mode: no message is issued (closed) or scheduled (open) at
    /// or after this many nanoseconds from `t0`.
    pub(super) deadline_ns: Option<u64>,
    /// Open loop only.
    pub(super) schedule: Option<Schedule>,
    /// Open loop: each connection's next due time in ns from `t0`,
    /// earliest first. Integer deadlines from [`Schedule`], so an entry
    /// pushed while handling instant `e` is always due after `e`.
    pub(super) timers: BinaryHeap<Reverse<(u64, usize)>>,
    /// Set by the watchdog: stop at the next check.
    pub(super) abort: Arc<AtomicBool>,
    /// Where this thread reports that it is making progress.
    pub(super) beacon: Arc<Beacon>,
    /// Progress since the beacon was last stamped.
    pub(super) moved: bool,
    /// Reconnect mode: connections opened so far (picks the source address).
    pub(super) opened: u64,
}

impl Worker {
    /// True once the watchdog has fired; checked inside every loop.
    pub(super) fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// Nanoseconds from the start of the window to `t`.
    pub(super) fn ns_since_t0(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.t0).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Open loop: issue every message of `idx` due by `horizon_ns` (the
    /// wake-up's instant plus the slack), record how late each one leaves,
    /// and queue its next due time, which the schedule's invariant puts
    /// strictly after `horizon_ns`: an entry is never popped twice in one
    /// expiry pass.
    pub(super) fn on_timer(&mut self, idx: usize, horizon_ns: u64, now: Instant) {
        let sched = self.schedule.expect("timers exist in the open loop only");
        let c = &mut self.conns[idx];
        if c.state != State::Active {
            return;
        }
        let due = sched.due_count(c.id, horizon_ns).min(c.cap);
        if due > c.issued {
            if c.written == c.received {
                // Idle until now: the stall clock starts with the new work.
                c.last_progress = now;
            }
            // The send instant, read per connection rather than once per
            // wake-up: a batch of hundreds of messages takes long enough
            // that the last of them really does leave later.
            let sent = Instant::now();
            let sent_ns = u64::try_from(sent.saturating_duration_since(self.t0).as_nanos())
                .unwrap_or(u64::MAX);
            for k in c.issued..due {
                // Early (inside the slack) is no lag: recorded as 0.
                let lag_ns = sent_ns.saturating_sub(sched.scheduled_ns(c.id, k));
                self.result.send_lag.saturating_record(lag_ns / 1000);
            }
            c.batch_first = c.issued;
            c.sent_at = sent;
            c.issued = due;
            self.moved = true;
            self.flush(idx);
        }
        let c = &self.conns[idx];
        if c.state == State::Active && c.issued < c.cap {
            let next = sched.scheduled_ns(c.id, c.issued);
            debug_assert!(
                next > horizon_ns,
                "schedule invariant: {next} <= {horizon_ns}"
            );
            self.timers.push(Reverse((next, idx)));
        }
        self.settle(idx, now);
    }

    /// Called whenever a connection has caught up: issue the next message
    /// (closed loop) or, if this connection has nothing more to send,
    /// half-close it.
    pub(super) fn settle(&mut self, idx: usize, now: Instant) {
        let c = &self.conns[idx];
        if c.state != State::Active || c.received < c.issued * self.size {
            return;
        }
        let more = if self.schedule.is_some() {
            c.issued < c.cap
        } else {
            self.more_to_send(idx, now)
        };
        // Reconnect mode: one message per connection, then the close.
        if more && !self.spec.reconnect {
            if self.schedule.is_none() {
                self.conns[idx].issued += 1;
                self.moved = true;
                self.flush(idx);
            }
            return;
        }
        let c = &mut self.conns[idx];
        c.state = State::Closing;
        c.last_progress = now;
        self.moved = true;
        let stream = c.stream.as_ref().expect("active has a stream");
        if let Err(e) = stream.shutdown(Shutdown::Write) {
            self.fail_io(idx, "shutdown", e);
            return;
        }
        // The EOF may already be waiting; the edge fired before we asked.
        self.on_readable(idx, true);
    }

    /// Closed loop: whether connection (or slot) `idx` has another message
    /// to send at `now`.
    pub(super) fn more_to_send(&self, idx: usize, now: Instant) -> bool {
        let c = &self.conns[idx];
        c.issued < c.share && self.deadline_ns.is_none_or(|d| self.ns_since_t0(now) < d)
    }

    /// The clean end of a connection: everything echoed, then EOF. In
    /// reconnect mode the slot starts its next conversation if it has one.
    fn finished(&mut self, idx: usize) {
        self.close(idx);
        self.moved = true;
        let now = Instant::now();
        if self.spec.reconnect && self.more_to_send(idx, now) {
            self.open_next(idx, now);
        } else {
            self.live -= 1;
        }
    }

    /// Writes as much of the issued bytes as the socket takes, copying them
    /// from the pattern.
    pub(super) fn flush(&mut self, idx: usize) {
        let closed_loop = self.schedule.is_none();
        loop {
            if self.aborted() {
                return;
            }
            let c = &mut self.conns[idx];
            if c.state != State::Active {
                return;
            }
            let target = c.issued * self.size;
            if c.written >= target {
                return;
            }
            let n = (target - c.written).min(CHUNK as u64) as usize;
            self.payload.fill(c.id, c.written, &mut self.wbuf[..n]);
            if closed_loop && !self.spec.reconnect && c.written % self.size == 0 {
                // A message's first byte: its latency runs from here, not
                // from when it was issued (at the window's start, the last
                // connection's first write comes well after the first's).
                c.sent_at = Instant::now();
            }
            let stream = c.stream.as_mut().expect("active has a stream");
            match stream.write(&self.wbuf[..n]) {
                Ok(0) => {
                    return self.fail(idx, ErrorKind::Reset, "write returned 0".into());
                }
                Ok(k) => {
                    c.written += k as u64;
                    c.last_progress = Instant::now();
                    self.result.bytes_sent += k as u64;
                    self.moved = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail_io(idx, "write", e),
            }
        }
    }

    /// Reads and verifies what the socket holds. With `drain` false it
    /// stops at the first short read: the socket is registered
    /// edge-triggered, and every segment that arrives after that read
    /// raises a new edge, so the second `read` that would only return
    /// `EAGAIN` is saved (one system call per echo). With `drain` true
    /// (the peer closed or failed, or a half-close just happened) it reads
    /// until `EAGAIN` or EOF, because an EOF queued behind data raises no
    /// edge of its own once the data has been read.
    pub(super) fn on_readable(&mut self, idx: usize, drain: bool) {
        loop {
            if self.aborted() {
                return;
            }
            let c = &mut self.conns[idx];
            if !matches!(c.state, State::Active | State::Closing) {
                return;
            }
            let stream = c.stream.as_mut().expect("open has a stream");
            let n = match stream.read(&mut self.rbuf) {
                Ok(0) => {
                    if c.state == State::Closing {
                        self.finished(idx);
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
            // The receive instant, before verification: checking 64 KiB is
            // the client's cost, not the server's latency.
            let now = Instant::now();
            if c.received + n as u64 > c.written {
                let why = format!(
                    "{} bytes came back but only {} were sent",
                    c.received + n as u64,
                    c.written
                );
                return self.fail(idx, ErrorKind::Mismatch, why);
            }
            if let Err(m) = self.payload.verify(c.id, c.received, &self.rbuf[..n]) {
                let at = c.received + m.at as u64;
                let why = format!(
                    "mismatch at stream byte {at} (message {}, byte {}): expected {:#04x}, got {:#04x}",
                    at / self.size,
                    at % self.size,
                    m.expected,
                    m.got
                );
                return self.fail(idx, ErrorKind::Mismatch, why);
            }
            let before = c.received / self.size;
            c.received += n as u64;
            c.last_progress = now;
            self.result.bytes_received += n as u64;
            self.moved = true;
            let after = c.received / self.size;
            for k in before..after {
                let start = match self.schedule {
                    Some(s) => {
                        let due =
                            self.t0 + std::time::Duration::from_nanos(s.scheduled_ns(c.id, k));
                        let sent = (k >= c.batch_first).then_some(c.sent_at);
                        open_loop_start(due, sent)
                    }
                    None => c.sent_at,
                };
                let us = now.saturating_duration_since(start).as_micros() as u64;
                self.result.latency.saturating_record(us.max(1));
                self.result.messages += 1;
            }
            let closing = c.state == State::Closing;
            if after > before {
                self.settle(idx, now);
            }
            if n < self.rbuf.len() && !drain && !closing {
                return;
            }
        }
    }

    pub(super) fn close(&mut self, idx: usize) {
        let c = &mut self.conns[idx];
        if let Some(mut s) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        c.state = State::Done;
    }

    pub(super) fn fail(&mut self, idx: usize, kind: ErrorKind, why: String) {
        if self.conns[idx].state == State::Done {
            return;
        }
        let id = self.conns[idx].id;
        self.close(idx);
        self.live -= 1;
        self.moved = true;
        self.result
            .errors
            .add(kind, format!("connection #{id}: {why}"));
    }

    pub(super) fn fail_io(&mut self, idx: usize, op: &str, e: io::Error) {
        let kind = match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => ErrorKind::Reset,
            io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Other,
        };
        self.fail(idx, kind, format!("{op}: {e}"));
    }

    /// Fails every connection that waits for the server and has seen no
    /// byte move for [`STALL_TIMEOUT`].
    pub(super) fn check_stalls(&mut self, now: Instant) {
        for idx in 0..self.conns.len() {
            let c = &self.conns[idx];
            let waiting = match c.state {
                State::Closing | State::Connecting => true,
                State::Active => c.received < c.issued * self.size,
                _ => false,
            };
            if waiting && now - c.last_progress > STALL_TIMEOUT {
                let why = format!(
                    "no progress for {STALL_TIMEOUT:?} ({} of {} bytes echoed{})",
                    c.received,
                    c.written,
                    match c.state {
                        State::Closing => ", waiting for EOF",
                        State::Connecting => ", connecting",
                        _ => "",
                    }
                );
                self.fail(idx, ErrorKind::Timeout, why);
            }
        }
    }

    /// What this thread still had to do, for the watchdog's message.
    pub(super) fn outstanding(&self, now_ns: u64) -> String {
        let open = self
            .conns
            .iter()
            .filter(|c| !matches!(c.state, State::Done | State::Idle))
            .count();
        let waiting: Vec<&Conn> = self
            .conns
            .iter()
            .filter(|c| {
                matches!(c.state, State::Active | State::Closing)
                    && c.received < c.issued * self.size
            })
            .collect();
        let unechoed: u64 = waiting
            .iter()
            .map(|c| c.issued * self.size - c.received)
            .sum();
        let due = self
            .timers
            .iter()
            .filter(|Reverse((t, _))| *t <= now_ns)
            .count();
        format!(
            "{open} connection(s) open, {} awaiting {unechoed} echoed byte(s), \
             {} timer(s) queued ({due} due), {} message(s) verified",
            waiting.len(),
            self.timers.len(),
            self.result.messages
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn open_loop_latency_starts_at_the_schedule_or_an_early_send() {
        let due = Instant::now() + Duration::from_millis(10);
        let early = due - Duration::from_micros(40);
        let late = due + Duration::from_micros(900);
        // Sent early: timed from the send, never from a later schedule.
        assert_eq!(open_loop_start(due, Some(early)), early);
        // Sent late or on time: from the schedule, the lag included.
        assert_eq!(open_loop_start(due, Some(late)), due);
        assert_eq!(open_loop_start(due, Some(due)), due);
        assert_eq!(open_loop_start(due, None), due);
    }
}
