//! A worker process, from the `fork` that made it to its `_exit`: it drops
//! what is not its own, then accepts (`shared-accept`, `reuseport`) or
//! receives (`pass-fd`) one client at a time and serves it with the
//! blocking echo every blocking model shares.
//!
//! # Syscalls
//!
//! `prctl(PR_SET_PDEATHSIG)`, `close(2)` of the inherited descriptors that
//! belong to the parent or to siblings, then per client `accept(2)` or
//! `recvmsg(2)`, `read(2)`/`write(2)` (through `echo_until_eof`), a one-byte
//! `write(2)` on its channel for `pass-fd`, and `_exit(2)`.
//!
//! # Fork safety
//!
//! `echo_protocol::run` has started its shutdown thread before
//! [`serve`](crate::serve) runs, so the workers are forked from a process
//! with two threads, and the child is a copy of the forking thread alone.
//! Whatever another thread held at that instant stays held forever in the
//! child. So a worker uses only what this thread owns: its copies of the
//! descriptors, heap memory (glibc's `fork` handlers reset the allocator's
//! locks), and stderr, whose lock the shutdown thread never takes. It never
//! touches [`echo_protocol::Shutdown`] (its thread does not exist in the
//! child), keeps SIGINT/SIGTERM blocked as inherited (the parent alone
//! decides when to stop, and a Ctrl-C sent to the whole process group does
//! not cut clients short), and ends with `_exit(2)`, never returning into
//! `run`. The alternative, `fork` + `exec` of a worker entry point, would
//! start each worker clean, at the cost of passing the listener across
//! `exec`.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

use echo_protocol::{
    ACCEPT_BACKOFF, Config, accept_error_is_shortage, accept_error_is_transient, echo_until_eof,
};
use nix::unistd::{Pid, getppid};

use crate::handoff::receive_fd;
use crate::supervisor::Pool;
use crate::{BUF_SIZE, Handoff, log};

impl Pool<'_> {
    // ANCHOR: worker
    /// The worker process. Never returns.
    pub(crate) fn worker(&self, i: usize, parent: Pid, chan: Option<UnixStream>) -> ! {
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes integers only. SIGKILL
        // cannot be blocked, so the inherited signal mask does not matter.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        // The parent may have died before the prctl: then nobody would
        // send the signal.
        if getppid() != parent {
            exit(1);
        }
        // Close the copies of what belongs to the parent or to other
        // workers: the parent's end of a sibling's channel held here would
        // keep that channel open after the parent closes it (the sibling
        // would never see EOF), and another worker's listener held here
        // would keep a socket alive that is not ours to serve. (Raw
        // `close`: these values are never dropped in the child, which
        // leaves through `_exit`.)
        let own = match self.handoff {
            Handoff::SharedAccept => Some(0),
            Handoff::Reuseport => Some(i),
            Handoff::PassFd => None,
        };
        for (k, l) in self.listeners.iter().enumerate() {
            if Some(k) != own {
                close(l.as_raw_fd());
            }
        }
        for slot in &self.slots {
            if let Some((_, pidfd)) = &slot.running {
                close(pidfd.as_raw_fd());
            }
            if let Some(c) = &slot.chan {
                close(c.as_raw_fd());
            }
        }
        let me = std::process::id();
        let mut buf = vec![0u8; BUF_SIZE];
        let status = match (own, chan) {
            (Some(k), _) => self.accept_loop(i, me, &self.listeners[k], &mut buf),
            (None, Some(chan)) => self.receive_loop(me, chan, &mut buf),
            (None, None) => 1,
        };
        exit(status)
    }

    /// `shared-accept` and `reuseport`: accept, admit, echo, repeat, until
    /// the parent shuts the listener down (`accept` then fails with
    /// `EINVAL`).
    fn accept_loop(&self, i: usize, me: u32, listener: &TcpListener, buf: &mut [u8]) -> i32 {
        loop {
            let (stream, peer) = match listener.accept() {
                Ok((stream, peer)) => {
                    // Nagle off, or a 64 KiB echo written 16 KiB at a time
                    // waits for delayed ACKs: see `echo_protocol::no_delay`.
                    echo_protocol::no_delay(&stream);
                    (stream, peer)
                }
                Err(e) if accept_error_is_transient(&e) => continue,
                Err(e) if accept_error_is_shortage(&e) => {
                    log(
                        self.config,
                        format_args!("worker {me}: accept: {e} (backing off)"),
                    );
                    std::thread::sleep(ACCEPT_BACKOFF);
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return 0,
                Err(e) => {
                    let line = format!("echo-prefork: worker {me}: accept: {e}\n");
                    let _ = io::stderr().write_all(line.as_bytes());
                    return 1;
                }
            };
            if !self.board.try_admit(i, self.config.max_conns) {
                log(
                    self.config,
                    format_args!(
                        "worker {me}: {peer}: refused, {} connections open",
                        self.config.max_conns
                    ),
                );
                continue;
            }
            serve_client(stream, peer, me, self.config, buf);
            self.board.release(i);
        }
    }

    /// `pass-fd`: receive a descriptor, echo, say "idle" with one byte,
    /// until the parent closes its end.
    fn receive_loop(&self, me: u32, mut chan: UnixStream, buf: &mut [u8]) -> i32 {
        loop {
            let stream = match receive_fd(&chan) {
                Ok(Some(fd)) => TcpStream::from(fd),
                // EOF, or a reset when the parent closed its end with our
                // last "idle" byte unread: the parent is stopping.
                Ok(None) => return 0,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let line = format!("echo-prefork: worker {me}: recvmsg: {e}\n");
                    let _ = io::stderr().write_all(line.as_bytes());
                    return 1;
                }
            };
            // A client reset before we got here has no peer address.
            match stream.peer_addr() {
                Ok(peer) => serve_client(stream, peer, me, self.config, buf),
                Err(e) => log(self.config, format_args!("worker {me}: {e}")),
            }
            if chan.write_all(&[1]).is_err() {
                // The parent is stopping (it closed its end): done.
                return 0;
            }
        }
    }
    // ANCHOR_END: worker
}

/// A worker's body for one client: echo, then log how it ended.
fn serve_client(mut stream: TcpStream, peer: SocketAddr, me: u32, config: &Config, buf: &mut [u8]) {
    log(config, format_args!("worker {me}: {peer}: connected"));
    match echo_until_eof(&mut stream, buf) {
        Ok(bytes) => log(
            config,
            format_args!("worker {me}: {peer}: closed after {bytes} bytes"),
        ),
        // A reset or broken pipe ends this client only.
        Err(e) => log(config, format_args!("worker {me}: {peer}: {e}")),
    }
}

pub(crate) fn close(fd: RawFd) {
    // SAFETY: called in the child on descriptors it inherited and will not
    // use again (their owners are never dropped there: it leaves by `_exit`).
    unsafe { libc::close(fd) };
}

pub(crate) fn exit(status: i32) -> ! {
    // SAFETY: `_exit` ends the process without running the parent's atexit
    // handlers or flushing buffers the child merely copied.
    unsafe { libc::_exit(status) }
}
