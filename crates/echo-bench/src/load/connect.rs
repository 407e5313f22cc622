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
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use nix::sys::socket::setsockopt;
use nix::sys::socket::sockopt::IpBindAddressNoPort;
use socket2::{Domain, Socket, Type};

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
        if self.spec.reconnect {
            // Every connection is opened inside the window, where its cost
            // is the point of the measurement.
            self.live = self.conns.len();
            return;
        }
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
                match connect_outcome(stream) {
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

    /// Reconnect mode: starts the slot's next conversation with a
    /// non-blocking connect, inside the measured window; its latency is
    /// timed from here. A connect refused at once ends the slot.
    pub(super) fn open_next(&mut self, idx: usize, now: Instant) {
        self.moved = true;
        // Not Done: a failure below must count the slot as ended.
        self.conns[idx].state = State::Idle;
        self.opened += 1;
        match connect_from_spread_source(self.spec.addr, self.opened) {
            Ok(mut s) => {
                let interest = Interest::READABLE | Interest::WRITABLE;
                if let Err(e) = self.poll.registry().register(&mut s, Token(idx), interest) {
                    return self.fail(idx, ErrorKind::Connect, format!("register: {e}"));
                }
                let c = &mut self.conns[idx];
                c.stream = Some(s);
                c.state = State::Connecting;
                c.sent_at = now;
                c.last_progress = now;
            }
            Err(e) => {
                let why = format!("connect to {}: {e}", self.spec.addr);
                self.fail(idx, ErrorKind::Connect, why);
            }
        }
    }

    /// Reconnect mode: an event on a connecting slot. Once the connect has
    /// settled, the conversation's one message is issued.
    pub(super) fn on_connect_event(&mut self, idx: usize) {
        let stream = self.conns[idx]
            .stream
            .as_ref()
            .expect("connecting has a stream");
        match connect_outcome(stream) {
            None => {}
            Some(Ok(())) => {
                let c = &mut self.conns[idx];
                c.state = State::Active;
                c.issued += 1;
                c.last_progress = Instant::now();
                self.moved = true;
                self.flush(idx);
            }
            Some(Err(e)) => {
                let why = format!("connect to {}: {e}", self.spec.addr);
                self.fail(idx, ErrorKind::Connect, why);
            }
        }
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

/// mio's recipe for a non-blocking connect: an error or a peer address
/// settles it (then `TCP_NODELAY`, so a small echo is not held back by
/// Nagle); `NotConnected` means the event was spurious and it is still in
/// flight (`None`).
fn connect_outcome(stream: &TcpStream) -> Option<io::Result<()>> {
    match stream.take_error() {
        Ok(Some(e)) | Err(e) => Some(Err(e)),
        Ok(None) => match stream.peer_addr() {
            Ok(_) => Some(stream.set_nodelay(true)),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => None,
            Err(e) => Some(Err(e)),
        },
    }
}

/// Source addresses a reconnecting load spreads its connections over.
const SOURCES: u64 = 256;

/// Reconnect mode: a non-blocking connect whose source address, for a
/// loopback IPv4 server, is one of [`SOURCES`] addresses of 127/8 in turn.
///
/// Why: the client closes first, so every conversation leaves a TIME_WAIT
/// socket on the client's side for 60 s, holding its ephemeral port. From a
/// single source address, the 28,000 ports of the default range fill up
/// within a run, and each `connect(2)` then scans longer for a free port:
/// measured here, the client's cost per conversation grew threefold by the
/// 20,000th, and the server looked slower than it was. Each source address
/// has a port space of its own. `IP_BIND_ADDRESS_NO_PORT` defers the port
/// choice from `bind(2)` to `connect(2)`, which may then share a port
/// between different destinations. Other servers get a plain connect.
fn connect_from_spread_source(addr: SocketAddr, seq: u64) -> io::Result<TcpStream> {
    let SocketAddr::V4(v4) = addr else {
        return TcpStream::connect(addr);
    };
    if !v4.ip().is_loopback() {
        return TcpStream::connect(addr);
    }
    let k = (seq % SOURCES) as u8;
    let source = SocketAddr::from((Ipv4Addr::new(127, 1, k, 1), 0));
    let socket = Socket::new(Domain::IPV4, Type::STREAM.nonblocking(), None)?;
    setsockopt(&socket, IpBindAddressNoPort, &true)?;
    socket.bind(&source.into())?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(socket)))
}
