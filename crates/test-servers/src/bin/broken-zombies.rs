//! `broken-zombies`: a fork-per-client echo server that never reaps its
//! children.
//!
//! The bug, as it looks in real code: the classic `fork()` server with the
//! `SIGCHLD` handling left out. The parent closes its copy of the
//! connection (so no descriptor leaks) and goes back to `accept`; each
//! child echoes, exits, and stays in the process table as a zombie until
//! its parent waits for it, which it never does. Thousands of clients
//! later, `fork` fails with `EAGAIN` (the user's process limit) and the
//! server stops serving. Correct: a `SIGCHLD` handler that loops
//! `waitpid(-1, WNOHANG)`, or `SIGCHLD` set to `SIG_IGN` so the kernel
//! reaps.
//!
//! Caught by `churn`: after 3,000 connections the server's tree holds
//! about 3,000 zombie children. The other cases miss it: nothing else
//! counts zombies, and a few thousand stay far below the process limit.
//!
//! Syscalls: `accept(2)`, `fork(2)`, `close(2)`, blocking `read(2)`,
//! `write(2)`, `shutdown(2)`, `_exit(2)`; no `waitpid(2)`.

use std::io;
use std::net::TcpListener;
use std::process::ExitCode;

use echo_protocol::{Config, NoFlags, echo_until_eof};
use nix::unistd::{ForkResult, fork};
use test_servers::{model, next_client};

fn main() -> ExitCode {
    echo_protocol::run(&model("broken-zombies"), serve)
}

fn serve(listener: TcpListener, config: &Config, _: NoFlags) -> io::Result<()> {
    while let Some(mut stream) = next_client(&listener, config)? {
        // The child only runs the echo loop on its own socket, with a buffer
        // on its stack, then `_exit`s.
        // SAFETY: it allocates nothing, takes no lock another thread may
        // hold at the fork, and runs no destructor or atexit handler.
        match unsafe { fork() }.map_err(io::Error::from)? {
            ForkResult::Child => {
                drop(listener);
                let mut buf = [0u8; 16 * 1024];
                let _ = echo_until_eof(&mut stream, &mut buf);
                // SAFETY: `_exit` ends the child at once; nothing of the
                // parent's is flushed or freed twice.
                unsafe { libc::_exit(0) }
            }
            // THE BUG: the child is never waited for.
            ForkResult::Parent { .. } => drop(stream),
        }
    }
    Ok(())
}
