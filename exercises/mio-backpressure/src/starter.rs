//! TASK: make this mio loop come back to a client it stopped reading.
//!
//! One thread, non-blocking sockets, mio's `Poll`. mio is edge-triggered
//! on every platform: an event says a socket's state *changed* (bytes
//! arrived, send space came back), once. So `conn_ready` reads until
//! `WouldBlock`, as it must, but no further than the output cap
//! ([`Echo::wants_read`] turns false past `OUTPUT_CAP` unsent bytes), or a
//! client that never reads its echo would make the server buffer without
//! bound. That part is right.
//!
//! The bug: when it stops at the cap, the rest of the client's bytes are
//! still in the socket. Later the client reads, a *writable* event comes,
//! the output drains, and the server could read again, but it only reads
//! on a *readable* event, and none will come: those bytes arrived long ago
//! (and the client cannot send more, its window is closed). A client that
//! sends a few MiB before it reads stalls forever.
//!
//! Fix `conn_ready` (and `Conn` if you need to) so that a client stopped at
//! the cap is read again as soon as its output has drained.
//!
//! Edit this file only. Grade with `just exercise mio-backpressure` (or
//! `bash scripts/exercise.sh mio-backpressure`).
//!
//! Syscalls (through mio): `epoll_create1(2)`, `epoll_ctl(2)`,
//! `epoll_wait(2)`, `accept4(2)`, `read(2)`, `write(2)`, `shutdown(2)`.

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::net::{Shutdown, TcpListener};
use std::os::fd::AsRawFd;

use echo_protocol::nonblocking::{Accepted, Echo, READ_CHUNK, Read, Spare, accept_one};
use echo_protocol::{Config, NoFlags};
use mio::event::Event;
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};

const LISTENER: Token = Token(0);
const SHUTDOWN: Token = Token(1);

/// One client.
struct Conn {
    stream: TcpStream,
    /// Read and not yet written back, bounded by `OUTPUT_CAP`.
    echo: Echo,
}

/// A client has an event. Returns `Ok(false)` once it is finished.
fn conn_ready(conn: &mut Conn, event: &Event, scratch: &mut [u8]) -> io::Result<bool> {
    if event.is_readable() || event.is_read_closed() {
        // Edge-triggered: read until the socket is empty, but not past
        // the output cap.
        while conn.echo.wants_read() {
            match conn.echo.read_from(&mut conn.stream, scratch)? {
                Read::Data(_) => {}
                Read::Eof | Read::WouldBlock => break,
            }
        }
    }
    // Whether woken as writable or just after reading: write back what
    // the socket takes; after a `WouldBlock` a writable event will come.
    if conn.echo.wants_write() {
        conn.echo.flush_to(&mut conn.stream)?;
    }
    if conn.echo.done() {
        conn.stream.shutdown(Shutdown::Write)?;
        return Ok(false);
    }
    Ok(true)
}

/// Runs the event loop until shutdown and the last client are done.
pub fn serve(listener: TcpListener, config: &Config, _flags: NoFlags) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut poll = Poll::new()?;
    let listener_fd = listener.as_raw_fd();
    poll.registry()
        .register(&mut SourceFd(&listener_fd), LISTENER, Interest::READABLE)?;
    poll.registry().register(
        &mut SourceFd(&config.shutdown.fd().as_raw_fd()),
        SHUTDOWN,
        Interest::READABLE,
    )?;
    let mut listener = Some(listener);
    let mut spare = Spare::new()?;
    // Tokens are never reused, so an event still queued for a closed
    // client cannot be taken for a new one.
    let mut conns: HashMap<Token, Conn> = HashMap::new();
    let mut next_token = SHUTDOWN.0 + 1;
    let mut scratch = vec![0; READ_CHUNK];
    let mut events = Events::with_capacity(256);
    while listener.is_some() || !conns.is_empty() {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in &events {
            match event.token() {
                LISTENER => {
                    if let Some(l) = &listener {
                        let registry = poll.registry();
                        accept_all(l, &mut spare, registry, &mut conns, &mut next_token, config);
                    }
                }
                SHUTDOWN => {
                    // Stop accepting; open clients finish within the grace
                    // period, after which the shutdown thread exits anyway.
                    if listener.take().is_some() {
                        let _ = poll.registry().deregister(&mut SourceFd(&listener_fd));
                    }
                }
                token => {
                    let Some(conn) = conns.get_mut(&token) else {
                        continue;
                    };
                    if !matches!(conn_ready(conn, event, &mut scratch), Ok(true)) {
                        // Dropping the stream closes it, which also takes
                        // it out of the poll set.
                        conns.remove(&token);
                    }
                }
            }
        }
    }
    Ok(())
}

/// The listener has an edge: accept until the backlog is empty, since no
/// other event will come for connections already waiting.
fn accept_all(
    listener: &TcpListener,
    spare: &mut Spare,
    registry: &Registry,
    conns: &mut HashMap<Token, Conn>,
    next_token: &mut usize,
    config: &Config,
) {
    loop {
        let stream = match accept_one(listener, spare) {
            Accepted::Client(stream, _) => stream,
            Accepted::Empty => return,
            Accepted::Skipped(e) => {
                config.log(format_args!("accept: {e}"));
                continue;
            }
            // A real server retries after a pause (echo-mio does); here
            // the next connection's event retries.
            Accepted::Later(e) => {
                config.log(format_args!("accept: {e}"));
                return;
            }
        };
        if conns.len() >= config.max_conns {
            config.log(format_args!("over --max-conns, closing a connection"));
            continue;
        }
        let token = Token(*next_token);
        *next_token += 1;
        // Both directions, once: under edge triggering an interest we do
        // not act on costs a wake-up per change, not one per wait.
        let interest = Interest::READABLE | Interest::WRITABLE;
        let registered = stream.set_nonblocking(true).and_then(|()| {
            let mut stream = TcpStream::from_std(stream);
            registry.register(&mut stream, token, interest)?;
            Ok(stream)
        });
        match registered {
            Ok(stream) => {
                let echo = Echo::new();
                conns.insert(token, Conn { stream, echo });
            }
            Err(e) => config.log(format_args!("cannot register a client: {e}")),
        }
    }
}
