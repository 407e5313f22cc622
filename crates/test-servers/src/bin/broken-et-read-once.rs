//! `broken-et-read-once`: an edge-triggered `epoll(7)` echo server that
//! reads once per wake-up.
//!
//! The bug, as it looks in real code: a level-triggered loop switched to
//! `EPOLLET` for speed, with its "one read per event" kept. Edge-triggered
//! epoll reports a socket when new data arrives, not while data is
//! waiting: whatever the one read left behind stays unread until the
//! client sends again, and the end of a burst is never read at all.
//! Correct: with `EPOLLET`, read until `EAGAIN`.
//!
//! Caught by `pipelined-1000`: a thousand messages of 1 to 512 bytes
//! (255,684 in all), written one `write(2)` each by a client that reads
//! only once its writer is done or stalled. Each message brings at most one
//! edge, and each edge one read of at most 256 bytes (the buffer this loop
//! was written with, for short request lines), so even if every message
//! arrived on its own wake-up, the reads could not keep up with the
//! messages longer than 256 bytes: 489 bytes at least stay unread for
//! good, whatever the timing. When messages pile up behind a blocked
//! write, as they do here, far more stay. One message at a time (`small`,
//! the round-trip cases) never leaves anything behind; the other streaming
//! cases (`large-1mib`, `half-close`...) catch it too.
//!
//! Syscalls: `epoll_create1(2)`, `epoll_ctl(2)` with `EPOLLET`,
//! `epoll_wait(2)`, `accept4(2)`, `read(2)`, blocking `write(2)`.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;

use echo_protocol::{Config, NoFlags, accept_error_is_transient};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use test_servers::model;

const LISTENER: u64 = u64::MAX;

fn main() -> ExitCode {
    echo_protocol::run(&model("broken-et-read-once"), serve)
}

fn serve(listener: TcpListener, config: &Config, _: NoFlags) -> io::Result<()> {
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    epoll.add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))?;
    let mut conns: HashMap<RawFd, TcpStream> = HashMap::new();
    let mut events = vec![EpollEvent::empty(); 256];
    // Sized for the short request lines this loop was first written for.
    let mut buf = [0u8; 256];
    loop {
        let n = match epoll.wait(&mut events, EpollTimeout::NONE) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        for ev in &events[..n] {
            if ev.data() == LISTENER {
                let stream = match listener.accept() {
                    Ok((s, _)) => s,
                    Err(e) if accept_error_is_transient(&e) => continue,
                    Err(e) => return Err(e),
                };
                if config.shutdown.requested() {
                    return Ok(());
                }
                // Writes stay blocking (simple, and not the bug here);
                // readiness decides when to read.
                let fd = stream.as_raw_fd();
                let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLET;
                epoll.add(&stream, EpollEvent::new(flags, fd as u64))?;
                conns.insert(fd, stream);
                continue;
            }
            let fd = ev.data() as RawFd;
            let Some(s) = conns.get_mut(&fd) else {
                continue;
            };
            // THE BUG: one read per edge; the rest waits for an edge that
            // only new data brings.
            let done = match s.read(&mut buf) {
                Ok(0) => true,
                Ok(n) => s.write_all(&buf[..n]).is_err(),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                    false
                }
                Err(_) => true,
            };
            if done {
                if let Some(s) = conns.remove(&fd) {
                    let _ = epoll.delete(&s);
                    let _ = s.shutdown(Shutdown::Write);
                }
            }
        }
    }
}
