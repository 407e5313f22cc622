//! TASK: make this edge-triggered epoll loop drain every event.
//!
//! One thread, non-blocking sockets, one `epoll(7)` instance. Every socket
//! is registered with `EPOLLET`: edge-triggered, so `epoll_wait(2)` reports
//! a socket when its state *changes* (new bytes arrived, send space came
//! back), not for as long as it *is* ready. The handlers below were written
//! with level-triggered habits: one `accept(2)`, one `read(2)`, one
//! `write(2)` per event. Whatever one call leaves behind (a second pending
//! connection, the rest of a 1 MiB upload, the EOF after the last bytes)
//! never produces another event, and the client stalls.
//!
//! Fix `accept_ready` and `conn_ready` so that each keeps going until the
//! kernel answers `EAGAIN` (`io::ErrorKind::WouldBlock`): accept until no
//! connection is left; read and echo until the socket is empty, and when a
//! write cannot finish, stop there and let the next `EPOLLOUT` edge resume.
//!
//! Edit this file only. Grade with `just exercise epoll-edge-triggered` (or
//! `bash scripts/exercise.sh epoll-edge-triggered`).
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

/// The listener has an edge: at least one connection is waiting.
fn accept_ready(
    listener: &TcpListener,
    epoll: &Epoll,
    conns: &mut HashMap<u64, Conn>,
    next_token: &mut u64,
    config: &Config,
) {
    match listener.accept() {
        Ok((stream, _)) => add_conn(stream, epoll, conns, next_token, config),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => config.log(format_args!("accept: {e}")),
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

/// A client has an edge. Returns false when it should be closed.
fn conn_ready(conn: &mut Conn) -> bool {
    // Read one chunk, unless the last one is still being sent.
    if conn.pending.is_empty() && !conn.eof {
        let mut buf = [0u8; CHUNK];
        match (&conn.stream).read(&mut buf) {
            Ok(0) => conn.eof = true,
            Ok(n) => conn.pending.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return false,
        }
    }
    // Send back what we can.
    if !conn.pending.is_empty() {
        match (&conn.stream).write(&conn.pending) {
            Ok(n) => {
                conn.pending.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return false,
        }
    }
    if conn.eof && conn.pending.is_empty() {
        let _ = conn.stream.shutdown(Shutdown::Write);
        return false;
    }
    true
}
