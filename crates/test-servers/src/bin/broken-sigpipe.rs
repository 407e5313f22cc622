//! `broken-sigpipe`: a thread-per-client echo server that puts `SIGPIPE`
//! back to its default action and carries on after a failed write.
//!
//! The bug, as it looks in real code: a program ported from C (or one that
//! calls `signal(SIGPIPE, SIG_DFL)` so that `cmd | head` behaves) writes
//! the echo and ignores the result, as C code that never checks `write`
//! does, with `write(2)` on the descriptor as the C original did. Rust's
//! runtime ignores `SIGPIPE` (and std's `TcpStream::write` sends with
//! `MSG_NOSIGNAL`) so that a write to a closed socket returns `EPIPE`; with
//! the default action restored and a plain `write(2)`, the write after a
//! reset kills the whole process instead. Correct: leave `SIGPIPE`
//! ignored (or send with `MSG_NOSIGNAL`) and end the connection on the
//! first write error.
//!
//! Caught by `reset-pending`: a client sends megabytes without reading and
//! resets while this server is blocked writing to it. The blocked write
//! fails with `ECONNRESET`, the error is ignored, the loop reads the data
//! still queued from that client and writes again: `EPIPE`, `SIGPIPE`,
//! death. `reset-isolation` catches it only when its reset happens to land
//! while the server is still echoing B's last 64 KiB (on this machine it
//! usually does); when the echo is done first, the next `read` ends the
//! connection cleanly. `reset-pending` does not depend on that timing.
//!
//! Syscalls: `signal(2)`, `accept(2)`, `clone(2)`, blocking `read(2)` and
//! `write(2)`.

use std::net::{Shutdown, TcpStream};
use std::process::ExitCode;

use test_servers::{model, read_some, thread_per_client};

fn main() -> ExitCode {
    // THE BUG, part one: back to "a write to a broken pipe kills us".
    // SAFETY: `signal` with SIG_DFL installs no handler, so no code runs in
    // signal context; it is called before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    echo_protocol::run(&model("broken-sigpipe"), thread_per_client(client))
}

fn client(mut s: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    while let Some(n) = read_some(&mut s, &mut buf) {
        // THE BUG, part two: "the client went away, nothing to do about
        // it", and on to the next read. `write(2)` on the descriptor, as
        // the C original did: std's own `TcpStream::write` sends with
        // MSG_NOSIGNAL, which would have saved us.
        let mut off = 0;
        while off < n {
            match nix::unistd::write(&s, &buf[off..n]) {
                Ok(k) => off += k,
                Err(_) => break,
            }
        }
    }
    let _ = s.shutdown(Shutdown::Write);
}
