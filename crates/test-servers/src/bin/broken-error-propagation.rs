//! `broken-error-propagation`: a non-blocking `poll(2)` echo server that
//! lets a per-connection error escape its event loop.
//!
//! The bug, as it looks in real code: the connection handler returns
//! `io::Result`, and the loop calls it with `?`, the idiom that is right
//! everywhere else in the function. A reset client makes `read` or `write`
//! fail with `ECONNRESET` or `EPIPE`, `serve` returns the error, and the
//! process exits 1 with every other client. Correct: log the error, close
//! that connection, carry on.
//!
//! Caught by `reset-isolation`: client B resets with its echo unread while
//! A is connected; A's next round trip finds the server gone, and the
//! suite's liveness check names the exit. `reset-pending`, `churn` and
//! `reset-before-accept` catch it too; the other cases never reset.
//!
//! Syscalls: `poll(2)`, non-blocking `accept4(2)`, `read(2)`, `write(2)`.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::ExitCode;

use echo_protocol::{Config, Model, NoFlags, accept_error_is_transient};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

const MODEL: Model = Model {
    name: "broken-error-propagation",
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
        let ready: Vec<PollFlags> = {
            let mut fds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
            for c in &conns {
                let mut ev = if c.eof || c.out.len() >= OUTPUT_CAP {
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
                // THE BUG: `?` sends one client's ECONNRESET up through
                // `serve` and out of `main`: every client goes with it.
                keep[i] = handle(c, &mut buf)?;
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
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
        return Ok(false);
    }
    Ok(true)
}
