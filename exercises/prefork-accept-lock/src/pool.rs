//! The parent: forks the workers, waits for SIGINT/SIGTERM, then stops the
//! listener and waits for the workers to finish their clients.
//!
//! Syscalls: `fork(2)`, `prctl(PR_SET_PDEATHSIG)` and `_exit(2)` in each
//! worker, `poll(2)` on the contract's shutdown eventfd, `shutdown(2)` with
//! `SHUT_RD` on the listener (every worker's `accept` then fails with
//! `EINVAL`), `waitpid(2)`.
//!
//! Trade-offs: no respawning of dead workers (see `echo-prefork` for a
//! parent that does), so that this file stays short. A worker still
//! serving when the grace period ends is killed by `PR_SET_PDEATHSIG`
//! when the contract ends the parent.

use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;

use echo_protocol::Config;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{Shutdown, shutdown};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, fork, getpid, getppid};

use crate::lock::AcceptLock;

/// What a worker runs: serve clients until `accept` fails for good, and
/// return the exit status.
pub type Worker = fn(&TcpListener, &AcceptLock, &Config) -> i32;

/// Forks `workers` processes that each run `worker`, then supervises them
/// until shutdown.
pub fn prefork(
    listener: &TcpListener,
    config: &Config,
    workers: u32,
    worker: Worker,
) -> io::Result<()> {
    let lock = AcceptLock::new()?;
    let parent = getpid();
    let mut pids = Vec::new();
    for _ in 0..workers {
        // SAFETY: the child uses only what this thread owns (the listener,
        // the lock file, the config's plain fields, heap memory, stderr),
        // never the contract's shutdown thread, and leaves by `_exit`.
        match unsafe { fork() }? {
            ForkResult::Child => {
                // SAFETY: prctl(PR_SET_PDEATHSIG) takes integers only.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
                let status = if getppid() == parent {
                    worker(listener, &lock, config)
                } else {
                    1 // the parent died before the prctl
                };
                // SAFETY: ends the child without running the parent's
                // exit handlers on state it merely copied.
                unsafe { libc::_exit(status) }
            }
            ForkResult::Parent { child } => pids.push(child),
        }
    }
    loop {
        let mut fds = [PollFd::new(config.shutdown.fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) if config.shutdown.requested() => break,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    shutdown(listener.as_raw_fd(), Shutdown::Read)?;
    for pid in pids {
        let _ = waitpid(pid, None);
    }
    Ok(())
}
