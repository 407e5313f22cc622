//! Reference solution of `fork-reaper`: a SIGCHLD handler that reaps, and a
//! parent that closes its copy of each client's socket.
//!
//! Reaping is the classic one (Stevens, UNP §5.10): a `SIGCHLD` handler
//! that calls `waitpid(-1, WNOHANG)` until no exited child is left.
//! `waitpid` is async-signal-safe, so it may run inside a handler, and the
//! loop matters because signals coalesce: children that exit close
//! together may raise one `SIGCHLD` between them. Two alternatives:
//! `SIGCHLD` set to `SIG_IGN` lets the kernel reap by itself (one line, but
//! the parent can then never learn how a child ended nor wait for one), and
//! the model crate `echo-fork-per-client` makes its handler only wake its
//! poll loop through an eventfd and reaps there, because it also keeps a
//! table of live children, which a handler must not touch.
//!
//! The parent's copy of the socket is closed by keeping it owned: `stream`
//! stays a `TcpStream` and is dropped after the `fork`. In the child the
//! same value is moved into `child_main`, which never returns.
//!
//! Syscalls: `sigaction(2)` once; `accept4(2)`, `fork(2)`, `close(2)` in
//! the parent; `wait4(2)` (glibc's `waitpid`) in the handler; `close(2)`,
//! `read(2)`, `write(2)`, `_exit(2)` in the child.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use echo_protocol::{
    ACCEPT_BACKOFF, Config, NoFlags, accept_error_is_shortage, accept_error_is_transient,
};
use nix::errno::Errno;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, close, fork};

/// Each child's read buffer, on its stack: no allocation after `fork`.
const BUF_SIZE: usize = 16 * 1024;

/// Reaps every child that has exited, then returns. Runs in whichever
/// thread the kernel interrupts, so it only calls `waitpid`, and puts
/// `errno` back as it found it for the code it interrupted.
extern "C" fn reap_children(_: libc::c_int) {
    let saved = Errno::last_raw();
    // Ok(StillAlive): children remain, none has exited; Err(ECHILD): none
    // remain at all. Either way there is nothing more to collect.
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
    Errno::set_raw(saved);
}

/// Accepts clients and forks a child for each, until shutdown is requested.
/// Children still serving then finish on their own.
pub fn serve(listener: TcpListener, config: &Config, _flags: NoFlags) -> io::Result<()> {
    // SA_RESTART: a blocking call the handler interrupts resumes instead of
    // failing with EINTR. SA_NOCLDSTOP: a stopped child is not an exit.
    let reaper = SigAction::new(
        SigHandler::Handler(reap_children),
        SaFlags::SA_RESTART | SaFlags::SA_NOCLDSTOP,
        SigSet::empty(),
    );
    // SAFETY: the handler calls only async-signal-safe functions.
    unsafe { sigaction(Signal::SIGCHLD, &reaper) }?;
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if accept_error_is_transient(&e) => continue,
            Err(e) if accept_error_is_shortage(&e) => {
                std::thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
            Err(e) => return Err(e),
        };
        if config.shutdown.requested() {
            return Ok(());
        }
        // SAFETY: the child runs `child_main`, which makes only plain system
        // calls on values already in memory and ends in `_exit`.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => child_main(stream, &listener),
            Ok(ForkResult::Parent { child }) => {
                config.log(format_args!("{peer}: served by child {child}"));
            }
            Err(e) => config.log(format_args!("{peer}: cannot fork: {e}")),
        }
        // The parent's copy. The child has its own; the client sees EOF
        // only once both are closed.
        drop(stream);
    }
}

/// The child: drop the listener, echo until the client's EOF, exit. Never
/// returns.
fn child_main(mut stream: TcpStream, listener: &TcpListener) -> ! {
    // The listener is the parent's business; a child holding it would keep
    // the port open after the parent stops accepting.
    let _ = close(listener.as_raw_fd());
    let mut buf = [0u8; BUF_SIZE];
    let code = match echo(&mut stream, &mut buf) {
        Ok(()) => 0,
        Err(_) => 1,
    };
    // SAFETY: ends the process at once, closing its descriptors (the
    // client's socket among them) and running no destructor of the
    // parent's state (the listener closed above is never dropped here).
    unsafe { libc::_exit(code) }
}

/// Writes back every byte read, until the client's EOF.
fn echo(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<()> {
    loop {
        let n = match stream.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        stream.write_all(&buf[..n])?;
    }
}
