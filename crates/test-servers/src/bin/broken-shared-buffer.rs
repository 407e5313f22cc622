//! `broken-shared-buffer`: a thread-per-client echo server whose threads
//! share one buffer, under a mutex taken once for the read and again for
//! the write.
//!
//! The bug, as it looks in real code: a "scratch buffer" kept in a static
//! to save allocations, first locked around the whole read-then-write
//! (which serialised every client behind the slowest), then "fixed" by
//! locking twice: once to read into it, once to write from it. Between the
//! two, another client's thread reads into the same buffer, and this
//! client gets the other's bytes. Each client alone is served perfectly.
//! Correct: one buffer per connection (it is 16 KiB).
//!
//! Caught by `interleaved`: 32 clients stream at once, so reads of
//! different clients fall between each other's read and write, and some
//! client receives bytes of another's stream (a mismatch at a named
//! offset). The cases with one client at a time never see it; those with
//! many clients but one short message each (`concurrent-200`, `idle-500`)
//! rarely collide, and then by chance.
//!
//! Syscalls: `accept(2)`, `clone(2)`, `poll(2)` (to wait without holding
//! the lock), `read(2)`, `write(2)`, futexes.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::process::ExitCode;
use std::sync::Mutex;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use test_servers::{model, read_some, thread_per_client};

/// One buffer for every client, "to save an allocation per connection".
static SCRATCH: Mutex<[u8; 16 * 1024]> = Mutex::new([0; 16 * 1024]);

fn main() -> ExitCode {
    echo_protocol::run(&model("broken-shared-buffer"), thread_per_client(client))
}

fn client(mut s: TcpStream) {
    loop {
        // Wait for input without holding the lock, so an idle client
        // blocks nobody.
        let mut fds = [PollFd::new(s.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::NONE).is_err() {
            break;
        }
        // THE BUG: the lock is released between the read and the write.
        let n = {
            let mut buf = SCRATCH.lock().unwrap_or_else(|p| p.into_inner());
            match read_some(&mut s, &mut buf[..]) {
                Some(n) => n,
                None => break,
            }
        };
        let buf = SCRATCH.lock().unwrap_or_else(|p| p.into_inner());
        if s.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = s.shutdown(Shutdown::Write);
}
