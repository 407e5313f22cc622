//! Reference solution of `mio-backpressure`: a client stopped at the
//! output cap keeps an `unread` flag, and once a writable event has drained
//! its output below the cap, `conn_ready` reads again on the spot, since no
//! readable event will come for bytes that are already waiting.
//!
//! `echo-mio` does the same with a fairness bound: one read per client per
//! turn, the others on a `ready` list served before the next sleep. Here
//! the loop goes on until the socket is empty or the output is stuck, which
//! is correct but lets one fast client hold the thread for a while.
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
    /// The socket may hold bytes (or an EOF) not read yet: set by a
    /// readable event, cleared only by `WouldBlock` or EOF. The level that
    /// edge triggering does not keep for us.
    unread: bool,
}

/// A client has an event. Returns `Ok(false)` once it is finished.
fn conn_ready(conn: &mut Conn, event: &Event, scratch: &mut [u8]) -> io::Result<bool> {
    if event.is_readable() || event.is_read_closed() {
        conn.unread = true;
    }
    loop {
        // Edge-triggered: read until the socket is empty, but not past
        // the output cap.
        while conn.unread && conn.echo.wants_read() {
            match conn.echo.read_from(&mut conn.stream, scratch)? {
                Read::Data(_) => {}
                Read::Eof | Read::WouldBlock => conn.unread = false,
            }
        }
        // Whether woken as writable or just after reading: write back what
        // the socket takes; after a `WouldBlock` a writable event will come.
        if conn.echo.wants_write() {
            conn.echo.flush_to(&mut conn.stream)?;
        }
        // Below the cap again with bytes still waiting: read them now, no
        // event will say so. Still over the cap, the write hit
        // `WouldBlock`, and its writable event brings us back.
        if !(conn.unread && conn.echo.wants_read()) {
            break;
        }
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
                // Bytes that came before registration are reported by
                // it: registering looks at the socket's current state.
                conns.insert(
                    token,
                    Conn {
                        stream,
                        echo,
                        unread: false,
                    },
                );
            }
            Err(e) => config.log(format_args!("cannot register a client: {e}")),
        }
    }
}
