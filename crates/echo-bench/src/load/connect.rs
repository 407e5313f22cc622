//! Opening a load thread's connections before the window: non-blocking
//! `connect(2)` in bounded batches, settled through `epoll_wait(2)` (mio)
//! with `getsockopt(SO_ERROR)` and `getpeername(2)`, then `TCP_NODELAY`. The
//! trade-off: at most [`CONNECT_BATCH`] connects are in flight per thread,
//! because a server's listen backlog may be small and a SYN flood of our own
//! would only buy retransmission delays; opening 19,000 connections thus
//! takes a few hundred round trips instead of one burst. All of them are
//! established before the clock starts, so accept cost is not mixed into
//! throughput.

use std::io;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Token};

use super::STALL_TIMEOUT;
use super::conn::{State, Worker};
use super::spec::ErrorKind;

/// Non-blocking connects in flight at once, per load thread.
const CONNECT_BATCH: usize = 64;

impl Worker {
    /// Opens every connection, at most [`CONNECT_BATCH`] connects in
    /// flight; returns early, with the rest unopened, if the watchdog fires.
    pub(super) fn connect_all(&mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next = 0;
        let mut in_flight = 0;
        let mut done = 0;
        while done < self.conns.len() {
            if self.aborted() {
                return;
            }
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
                break;
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
                self.moved = true;
            }
            let now = Instant::now();
            // Only the started ones can be connecting.
            for idx in 0..next {
                let c = &self.conns[idx];
                if c.state == State::Connecting && now - c.last_progress > STALL_TIMEOUT {
                    self.connect_failed(idx, format!("no answer in {STALL_TIMEOUT:?}"));
                    in_flight -= 1;
                    done += 1;
                    self.moved = true;
                }
            }
            if self.moved {
                self.beacon.stamp(now);
                self.moved = false;
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
}
