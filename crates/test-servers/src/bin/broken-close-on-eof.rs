//! `broken-close-on-eof`: a non-blocking `poll(2)` echo server that closes
//! a connection as soon as `read` returns 0, throwing away the output it
//! still holds for it.
//!
//! The bug, as it looks in real code: the EOF arm of the read handler
//! does what the blocking version did (`break`, then close), but here the
//! echo of the last bytes may still sit in the connection's output queue,
//! waiting for `POLLOUT`. Correct: note the EOF, stop reading, flush the
//! queue, then `shutdown(SHUT_WR)` and close.
//!
//! Caught by `half-close`: its clients write conversations of growing size
//! and half-close before reading a byte, so one of them ends while the
//! kernel's send buffer is full and the queue holds the rest; the client
//! sees the stream cut short (at 3.75 MiB on this machine's loopback
//! buffers). The other cases miss it: their clients read while they
//! write, or half-close only after reading their echo (`churn`), so
//! nothing is queued in user space at EOF.
//!
//! Syscalls: `poll(2)`, non-blocking `accept4(2)`, `read(2)`, `write(2)`.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::ExitCode;

use echo_protocol::{Config, Model, NoFlags, accept_error_is_transient};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

const MODEL: Model = Model {
    name: "broken-close-on-eof",
    expected_limits: &[],
};

/// Output kept per connection before we stop reading from it.
const OUTPUT_CAP: usize = 256 * 1024;

struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
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
                let mut ev = PollFlags::empty();
                if c.out.len() < OUTPUT_CAP {
                    ev |= PollFlags::POLLIN;
                }
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
    if c.out.len() < OUTPUT_CAP {
        match c.stream.read(buf) {
            // THE BUG: the client is done sending, but not necessarily done
            // receiving; whatever is still in `c.out` is dropped with it.
            Ok(0) => return Ok(false),
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
    Ok(true)
}
