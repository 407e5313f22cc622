//! TASK: clean up after each child: reap it, and close the parent's copy of its socket.
//!
//! A first fork-per-client server. The parent accepts, `fork(2)`s, and the
//! child echoes for its one client and exits. It echoes correctly, and yet
//! it has two leaks that a short test never notices:
//!
//! - **Zombies.** A child that exits stays in the process table, state `Z`,
//!   until its parent collects its exit status with `wait(2)`. This parent
//!   never does, so every client served leaves one behind (`ps` shows them
//!   as `<defunct>`), until the process limit refuses the next `fork`.
//! - **The parent's copy of the socket.** After `fork`, the client's socket
//!   is open in two descriptor tables. The connection ends (the client
//!   reads EOF) only when the *last* copy is closed, and the parent never
//!   closes its copy: the child's exit closes one of two, the client waits
//!   forever, and the parent gains one descriptor per client.
//!
//! Fix both in this file. Reaping must happen without blocking the accept
//! loop and must not miss children: one `SIGCHLD` can stand for several
//! exits. Grade with `just exercise fork-reaper` (or
//! `bash scripts/exercise.sh fork-reaper`).
//!
//! `--max-conns` is not enforced here (the model crate
//! `echo-fork-per-client` counts its live children for it). The rules for a
//! child of a process with threads (this one has two, `echo_protocol::run`
//! starts a shutdown thread) are kept: after `fork` the child only makes
//! plain system calls on memory it already has, no allocation, no stdio,
//! and ends in `_exit`.
//!
//! Syscalls: `accept4(2)`, `fork(2)`, `close(2)`, `read(2)`, `write(2)`,
//! `_exit(2)`.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};

use echo_protocol::{
    ACCEPT_BACKOFF, Config, NoFlags, accept_error_is_shortage, accept_error_is_transient,
};
use nix::unistd::{ForkResult, close, fork};

/// Each child's read buffer, on its stack: no allocation after `fork`.
const BUF_SIZE: usize = 16 * 1024;

/// Accepts clients and forks a child for each, until shutdown is requested.
/// Children still serving then finish on their own.
pub fn serve(listener: TcpListener, config: &Config, _flags: NoFlags) -> io::Result<()> {
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
        // The child receives the socket as a plain descriptor number: `fork`
        // gives it a copy of the whole descriptor table, this one included.
        let client = stream.into_raw_fd();
        // SAFETY: the child runs `child_main`, which makes only plain system
        // calls on values already in memory and ends in `_exit`.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => child_main(client, listener.as_raw_fd()),
            Ok(ForkResult::Parent { child }) => {
                config.log(format_args!("{peer}: served by child {child}"));
            }
            Err(e) => config.log(format_args!("{peer}: cannot fork: {e}")),
        }
    }
}

/// The child: drop the listener, echo until the client's EOF, exit. Never
/// returns.
fn child_main(client: RawFd, listener: RawFd) -> ! {
    // The listener is the parent's business; a child holding it would keep
    // the port open after the parent stops accepting.
    let _ = close(listener);
    // SAFETY: `client` is the accepted socket, open in this process and
    // owned by nothing else here.
    let mut stream = unsafe { TcpStream::from_raw_fd(client) };
    let mut buf = [0u8; BUF_SIZE];
    let code = match echo(&mut stream, &mut buf) {
        Ok(()) => 0,
        Err(_) => 1,
    };
    // SAFETY: ends the process at once, closing its descriptors (the
    // client's socket among them) and running no destructor of the
    // parent's state.
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
