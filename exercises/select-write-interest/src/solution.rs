//! Reference solution of `select-write-interest`: a client is in the write
//! set only while it has output pending.
//!
//! `select` reports a descriptor for as long as it *is* ready (level-
//! triggered), and a socket's send buffer almost always has room. Asking
//! about writability is therefore a question to ask only when there is
//! something to write: after a read whose echo did not fit in the socket at
//! once, until it is all sent. The read set follows the same rule the other
//! way: a client is in it only while its output is under the cap, which is
//! the back-pressure. With nothing pending anywhere, every client sits in
//! the read set alone and the loop sleeps until one of them sends.
//!
//! Syscalls: `select(2)`, `accept4(2)`, `read(2)`, `write(2)`, `shutdown(2)`.

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};

use echo_protocol::nonblocking::{Accepted, Echo, READ_CHUNK, Spare, accept_one};
use echo_protocol::{Config, NoFlags};
use nix::errno::Errno;
use nix::sys::select::{FD_SETSIZE, FdSet, select};

/// One client.
struct Conn {
    stream: TcpStream,
    /// What was read and not yet written back (bounded: see `wants_read`).
    echo: Echo,
}

/// Puts each client in the sets `select` should watch it in.
fn build_sets<'fd>(conns: &'fd [Conn], read_set: &mut FdSet<'fd>, write_set: &mut FdSet<'fd>) {
    for c in conns {
        if c.echo.wants_read() {
            read_set.insert(c.stream.as_fd());
        }
        // Only while output is pending: an always-writable socket in the
        // write set makes every `select` return at once.
        if c.echo.wants_write() {
            write_set.insert(c.stream.as_fd());
        }
    }
}

/// Runs the loop until shutdown and the last client are done.
pub fn serve(listener: TcpListener, config: &Config, _flags: NoFlags) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut listener = Some(listener);
    let mut spare = Spare::new()?;
    let mut conns: Vec<Conn> = Vec::new();
    let mut scratch = vec![0; READ_CHUNK];
    while listener.is_some() || !conns.is_empty() {
        let mut read_set = FdSet::new();
        let mut write_set = FdSet::new();
        if let Some(l) = &listener {
            read_set.insert(l.as_fd());
            read_set.insert(config.shutdown.fd());
        }
        build_sets(&conns, &mut read_set, &mut write_set);
        match select(None, &mut read_set, &mut write_set, None, None) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<(bool, bool)> = conns
            .iter()
            .map(|c| {
                let fd = c.stream.as_fd();
                (read_set.contains(fd), write_set.contains(fd))
            })
            .collect();
        let (accept, stop) = match &listener {
            Some(l) => (
                read_set.contains(l.as_fd()),
                read_set.contains(config.shutdown.fd()),
            ),
            None => (false, false),
        };

        let mut index = 0;
        conns.retain_mut(|c| {
            let (readable, writable) = ready[index];
            index += 1;
            !(readable || writable) || echo_ready(c, readable, &mut scratch).unwrap_or(false)
        });

        if stop {
            // Open clients finish within the grace period, after which the
            // shutdown thread exits anyway.
            listener = None;
        } else if let Some(l) = listener.as_ref().filter(|_| accept) {
            accept_some(l, &mut spare, &mut conns, config);
        }
    }
    Ok(())
}

/// Reads once if readable, writes what is pending. Returns false when the
/// connection is finished.
fn echo_ready(c: &mut Conn, readable: bool, scratch: &mut [u8]) -> io::Result<bool> {
    if readable {
        c.echo.read_from(&mut c.stream, scratch)?;
    }
    if c.echo.wants_write() {
        c.echo.flush_to(&mut c.stream)?;
    }
    if c.echo.done() {
        c.stream.shutdown(Shutdown::Write)?;
        return Ok(false);
    }
    Ok(true)
}

/// Accepts up to 64 connections. One whose descriptor does not fit in an
/// `fd_set` is closed at once (`FdSet::insert` would panic on it).
fn accept_some(listener: &TcpListener, spare: &mut Spare, conns: &mut Vec<Conn>, config: &Config) {
    for _ in 0..64 {
        match accept_one(listener, spare) {
            Accepted::Client(stream, peer) => {
                let fd = stream.as_raw_fd() as usize;
                if fd >= FD_SETSIZE || conns.len() >= config.max_conns {
                    config.log(format_args!("{peer}: refused (descriptor {fd})"));
                } else if stream.set_nonblocking(true).is_ok() {
                    conns.push(Conn {
                        stream,
                        echo: Echo::new(),
                    });
                }
            }
            Accepted::Empty | Accepted::Later(_) => return,
            Accepted::Skipped(e) => config.log(format_args!("accept: {e}")),
        }
    }
}
