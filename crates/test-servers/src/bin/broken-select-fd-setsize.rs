//! `broken-select-fd-setsize`: a `select(2)` echo server that dies when a
//! descriptor number reaches 1024.
//!
//! The bug, as it looks in real code: every connection is put in an
//! `fd_set`, which is a bitmap of `FD_SETSIZE` (1024) bits. In C,
//! `FD_SET(1030, &set)` writes past the end of the bitmap and corrupts the
//! stack; nix's `FdSet::insert` checks the bound and panics instead, which
//! kills the process. Nothing limits the number of connections to what
//! `select` can watch. Correct: refuse (close) a connection whose
//! descriptor is `FD_SETSIZE` or more, or use `poll`/`epoll`.
//!
//! Caught by `beyond-fd-setsize`: it holds 1,100 connections, the server
//! panics on the first descriptor past 1023, and the fresh client after
//! them finds nobody listening. The other cases stay below 1024
//! descriptors (`idle-500`, the most, holds 500), so they all pass.
//!
//! Syscalls: `select(2)`, non-blocking `accept4(2)`, `read(2)`, `write(2)`.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::ExitCode;

use echo_protocol::{Config, Model, NoFlags, accept_error_is_transient};
use nix::sys::select::{FdSet, select};

const MODEL: Model = Model {
    name: "broken-select-fd-setsize",
    expected_limits: &[],
};

/// Output kept per connection before we stop reading from it.
const OUTPUT_CAP: usize = 256 * 1024;

struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
    eof: bool,
}

fn main() -> ExitCode {
    echo_protocol::run(&MODEL, serve)
}

fn serve(listener: TcpListener, config: &Config, _: NoFlags) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut conns: Vec<Conn> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (readable, writable): (Vec<bool>, Vec<bool>) = {
            let mut rd = FdSet::new();
            let mut wr = FdSet::new();
            rd.insert(listener.as_fd());
            for c in &conns {
                // THE BUG: no check against FD_SETSIZE; at descriptor 1024
                // this panics (in C it would scribble past the bitmap).
                if !c.eof && c.out.len() < OUTPUT_CAP {
                    rd.insert(c.stream.as_fd());
                }
                if !c.out.is_empty() {
                    wr.insert(c.stream.as_fd());
                }
            }
            match select(None, &mut rd, &mut wr, None, None) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            let r = std::iter::once(rd.contains(listener.as_fd()))
                .chain(conns.iter().map(|c| rd.contains(c.stream.as_fd())))
                .collect();
            let w = conns
                .iter()
                .map(|c| wr.contains(c.stream.as_fd()))
                .collect();
            (r, w)
        };
        let mut keep = vec![true; conns.len()];
        for (i, c) in conns.iter_mut().enumerate() {
            if readable[i + 1] || writable[i] {
                keep[i] = handle(c, &mut buf).unwrap_or(false);
            }
        }
        let mut k = keep.into_iter();
        conns.retain(|_| k.next().unwrap_or(true));
        if readable[0] {
            loop {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if config.shutdown.requested() {
                            return Ok(());
                        }
                        stream.set_nonblocking(true)?;
                        conns.push(Conn {
                            stream,
                            out: Vec::new(),
                            eof: false,
                        });
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if accept_error_is_transient(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// Reads once if there is room, flushes what it can; `Ok(false)` to close.
fn handle(c: &mut Conn, buf: &mut [u8]) -> io::Result<bool> {
    if !c.eof && c.out.len() < OUTPUT_CAP {
        match c.stream.read(buf) {
            Ok(0) => c.eof = true,
            Ok(n) => c.out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(e) => return Err(e),
        }
    }
    while !c.out.is_empty() {
        match c.stream.write(&c.out) {
            Ok(n) => {
                c.out.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if c.eof && c.out.is_empty() {
        let _ = c.stream.shutdown(Shutdown::Write);
        return Ok(false);
    }
    Ok(true)
}
