//! `broken-unbounded-buffer`: a non-blocking `poll(2)` echo server that
//! reads whatever a client sends, whether or not the client reads its
//! echo, and queues the unsent echo in a `Vec` without limit.
//!
//! The bug, as it looks in real code: the poll set always asks for
//! `POLLIN`. Everything else is right (partial writes queued, `POLLOUT`
//! while output waits, EOF handled after the queue drains), so every
//! client that reads its echo is served perfectly. Correct: stop asking
//! for `POLLIN` while a connection's queue is over a cap, so the kernel's
//! buffers fill and the client's writes block.
//!
//! Caught by `slow-reader`: client S offers 256 MiB and reads nothing; this
//! server's memory grows with it and the PSS bound (64 MiB) trips within a
//! second. The other cases miss it: every other client reads while it
//! writes, or writes less than the kernel buffers hold (`reset-pending`
//! resets before the growth is measured).
//!
//! Syscalls: `poll(2)`, non-blocking `accept4(2)`, `read(2)`, `write(2)`.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::ExitCode;

use echo_protocol::{Config, Model, NoFlags, accept_error_is_transient};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

const MODEL: Model = Model {
    name: "broken-unbounded-buffer",
    expected_limits: &[],
};

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
        let ready: Vec<PollFlags> = {
            let mut fds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
            for c in &conns {
                // THE BUG: always interested in input, however much output
                // is waiting for this client.
                let mut ev = if c.eof {
                    PollFlags::empty()
                } else {
                    PollFlags::POLLIN
                };
                if !c.out.is_empty() {
                    ev |= PollFlags::POLLOUT;
                }
                fds.push(PollFd::new(c.stream.as_fd(), ev));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            fds.iter()
                .map(|p| p.revents().unwrap_or(PollFlags::empty()))
                .collect()
        };
        let mut keep = vec![true; conns.len()];
        for (i, c) in conns.iter_mut().enumerate() {
            if !ready[i + 1].is_empty() {
                keep[i] = handle(c, &mut buf).unwrap_or(false);
            }
        }
        let mut k = keep.into_iter();
        conns.retain(|_| k.next().unwrap_or(true));
        if ready[0].contains(PollFlags::POLLIN) {
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

/// Reads once, flushes what it can; `Ok(false)` to close.
fn handle(c: &mut Conn, buf: &mut [u8]) -> io::Result<bool> {
    if !c.eof {
        match c.stream.read(buf) {
            Ok(0) => c.eof = true,
            // Never full: a Vec grows (doubling) as long as there is memory.
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
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
        return Ok(false);
    }
    Ok(true)
}
