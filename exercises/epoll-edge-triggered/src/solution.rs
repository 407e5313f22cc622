//! Reference solution of `epoll-edge-triggered`: every handler drains its
//! socket until `EAGAIN`.
//!
//! Under `EPOLLET` an event means "something changed", and the only proof
//! that nothing is left is the kernel answering `EAGAIN`. So the listener
//! accepts until `EAGAIN`, and a client is pumped (write all that is
//! pending, then read the next chunk, again and again) until one of the two
//! directions answers `EAGAIN`. That stop always has an edge to come: new
//! bytes arriving for a read, send space coming back for a write. The
//! reward over level-triggered epoll: each socket is registered once, for
//! both directions, with no `epoll_ctl` to toggle write interest, and a
//! busy socket is not reported again and again while we are still on it.
//! The price is this discipline: one early return strands a client.
//!
//! Syscalls: `epoll_create1(2)`, `epoll_ctl(2)`, `epoll_wait(2)`,
//! `accept4(2)`, `read(2)`, `write(2)`, `shutdown(2)`.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};

use echo_protocol::{Config, NoFlags};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

const LISTENER: u64 = 0;
const SHUTDOWN: u64 = 1;
/// Bytes per `read(2)`. A connection reads again only once everything it
/// read was written back, so this is also its whole memory footprint: a
/// client that never reads cannot make the server buffer without bound.
const CHUNK: usize = 16 * 1024;

/// One client.
struct Conn {
    stream: TcpStream,
    /// Bytes read but not yet written back.
    pending: Vec<u8>,
    /// The client half-closed; once `pending` is sent, we close too.
    eof: bool,
}

/// Runs the event loop until shutdown and the last client are done.
pub fn serve(listener: TcpListener, config: &Config, _flags: NoFlags) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    let edge_in = EpollFlags::EPOLLIN | EpollFlags::EPOLLET;
    epoll.add(&listener, EpollEvent::new(edge_in, LISTENER))?;
    epoll.add(
        config.shutdown.fd(),
        EpollEvent::new(EpollFlags::EPOLLIN, SHUTDOWN),
    )?;

    let mut conns: HashMap<u64, Conn> = HashMap::new();
    let mut next_token = SHUTDOWN + 1;
    let mut accepting = true;
    let mut events = vec![EpollEvent::empty(); 256];
    while accepting || !conns.is_empty() {
        let n = match epoll.wait(&mut events, EpollTimeout::NONE) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        for event in &events[..n] {
            match event.data() {
                LISTENER if accepting => {
                    accept_ready(&listener, &epoll, &mut conns, &mut next_token, config);
                }
                LISTENER => {}
                SHUTDOWN => {
                    // Stop accepting; open clients finish within the grace
                    // period, after which the shutdown thread exits anyway.
                    epoll.delete(&listener)?;
                    epoll.delete(config.shutdown.fd())?;
                    accepting = false;
                }
                token => {
                    // Absent if it was closed earlier in this same batch.
                    let Some(conn) = conns.get_mut(&token) else {
                        continue;
                    };
                    if !conn_ready(conn) {
                        // Dropping the stream closes it, which also removes
                        // it from the epoll interest list.
                        conns.remove(&token);
                    }
                }
            }
        }
    }
    Ok(())
}

/// The listener has an edge: accept until the backlog is empty.
fn accept_ready(
    listener: &TcpListener,
    epoll: &Epoll,
    conns: &mut HashMap<u64, Conn>,
    next_token: &mut u64,
    config: &Config,
) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => add_conn(stream, epoll, conns, next_token, config),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            // The client reset before we got to it: try the next one.
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // Out of descriptors: the rest of the backlog waits for the
                // next connection's edge. Retrying here would spin.
                config.log(format_args!("accept: {e}"));
                return;
            }
        }
    }
}

/// Registers a new client for both directions, once, edge-triggered: no
/// `epoll_ctl` is needed later to switch write interest on and off.
fn add_conn(
    stream: TcpStream,
    epoll: &Epoll,
    conns: &mut HashMap<u64, Conn>,
    next_token: &mut u64,
    config: &Config,
) {
    if conns.len() >= config.max_conns {
        config.log(format_args!("over --max-conns, closing a connection"));
        return;
    }
    let token = *next_token;
    *next_token += 1;
    let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLET;
    let registered = stream.set_nonblocking(true).and_then(|()| {
        epoll
            .add(&stream, EpollEvent::new(flags, token))
            .map_err(io::Error::from)
    });
    match registered {
        Ok(()) => {
            conns.insert(
                token,
                Conn {
                    stream,
                    pending: Vec::with_capacity(CHUNK),
                    eof: false,
                },
            );
        }
        Err(e) => config.log(format_args!("cannot register a client: {e}")),
    }
}

/// A client has an edge: echo until the socket says `EAGAIN` in one
/// direction. Returns false when it should be closed.
fn conn_ready(conn: &mut Conn) -> bool {
    let mut buf = [0u8; CHUNK];
    loop {
        // Everything read so far goes back before reading more, which keeps
        // memory per client at one chunk.
        while !conn.pending.is_empty() {
            match (&conn.stream).write(&conn.pending) {
                Ok(n) => {
                    conn.pending.drain(..n);
                }
                // The client is not reading: its EPOLLOUT edge resumes us.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if conn.eof {
            let _ = conn.stream.shutdown(Shutdown::Write);
            return false;
        }
        match (&conn.stream).read(&mut buf) {
            Ok(0) => conn.eof = true,
            Ok(n) => conn.pending.extend_from_slice(&buf[..n]),
            // Drained: the next byte to arrive is a new edge.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}
