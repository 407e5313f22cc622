//! Servers that test the tests.
//!
//! A check that cannot fail proves nothing, so every conformance case and
//! every fault has, here, a server it must catch: a small program with one
//! named bug, written the way that bug looks in real code (`src/bin/broken-*`).
//! Beside them stand a correct but deliberately slow control that must pass
//! everything (`control-slow`), and `fork-burn`, a forking server whose
//! children burn a known amount of CPU, against which the harness's
//! process-tree figures are checked.
//!
//! The tests in `tests/` run the suite against each and assert that the
//! case named for the bug fails. If a case is weakened later, its broken
//! server passes, and CI turns red.
//!
//! None of these is a model: nothing here is benchmarked or taught as a
//! design, and nothing depends on this crate.
//!
//! # What the servers share
//!
//! Each bin should read as a skeleton plus one bug, so the parts that are
//! the same in every server of a kind live here, written once: the
//! thread-per-client accept loop ([`next_client`], or all of it in
//! [`thread_per_client`]), the read and the echo of a client thread
//! ([`read_some`], [`echo_client`]), the drain at shutdown ([`join_all`]),
//! the non-blocking readiness loop ([`poll_loop`]), and the contract's
//! [`model`] entry with no expected limits. The accept loop stays a
//! `while let` in the bins that do something other than spawn a plain
//! client thread, so what is done per connection (a spawn, a join, a fork,
//! a table entry) is read where the bug is. Where the bug *is* the loop (a
//! loop that spins on `EMFILE`, an `fd_set`, edge-triggered reads), the bin
//! writes all of it.
//!
//! Syscalls: `accept(2)` (blocking here, non-blocking `accept4(2)` in
//! [`poll_loop`]), `clone(2)`, `read(2)`, `write(2)`, `shutdown(2)`,
//! `poll(2)`.

pub mod poll_loop;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread::{self, JoinHandle};

use echo_protocol::{Config, Model, NoFlags, accept_error_is_transient};

/// One `accept(2)`. `Ok(None)` when the error concerns only the connection
/// being accepted ([`accept_error_is_transient`]), so the caller simply
/// tries again; any other error (`EMFILE`...) is the server's and is
/// returned, which ends a test server: none of them is meant to survive
/// running out of descriptors, and ending loudly beats spinning.
pub fn accept(listener: &TcpListener) -> io::Result<Option<(TcpStream, SocketAddr)>> {
    match listener.accept() {
        Ok(accepted) => Ok(Some(accepted)),
        Err(e) if accept_error_is_transient(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The next connection of a blocking accept loop, or `Ok(None)` once
/// shutdown is requested, so the loop reads `while let Some(stream) =
/// next_client(..)? { .. }` and what follows it is the server's shutdown.
///
/// The shutdown check comes after `accept` because the contract's shutdown
/// thread wakes a blocked `accept` by connecting to the listener; that
/// wake-up connection is dropped, never served. The peer's address is
/// dropped too, as `incoming()` does: no test server logs it.
pub fn next_client(listener: &TcpListener, config: &Config) -> io::Result<Option<TcpStream>> {
    loop {
        if let Some((stream, _)) = accept(listener)? {
            return Ok((!config.shutdown.requested()).then_some(stream));
        }
    }
}

/// A whole thread-per-client server whose bug is inside `client`: a
/// detached thread per connection, and on shutdown a return at once,
/// without waiting for them. That cuts open connections at exit, which
/// no case looks at; the fault that does (`sigterm-mid-transfer`) is run
/// against `broken-exit-on-sigterm` alone, and the servers meant to pass
/// a shutdown keep their handles for [`join_all`].
pub fn thread_per_client(
    client: fn(TcpStream),
) -> impl FnOnce(TcpListener, &Config, NoFlags) -> io::Result<()> {
    move |listener: TcpListener, config: &Config, _: NoFlags| {
        while let Some(stream) = next_client(&listener, config)? {
            thread::spawn(move || client(stream));
        }
        Ok(())
    }
}

/// One `read` of a client thread: `None` at EOF or on any error, both of
/// which end a conversation that has no one to report to.
pub fn read_some(s: &mut TcpStream, buf: &mut [u8]) -> Option<usize> {
    match s.read(buf) {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

/// The echo of a client thread: read, write it all back, until EOF or the
/// first error, then half-close. Returns the bytes echoed.
///
/// Unlike [`echo_protocol::echo_until_eof`], any error (a read timeout
/// included) just ends the conversation and still half-closes: a client
/// thread has no one to report to, and the servers that use this are
/// about some other bug.
pub fn echo_client(s: &mut TcpStream) -> u64 {
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0;
    while let Some(n) = read_some(s, &mut buf) {
        if s.write_all(&buf[..n]).is_err() {
            break;
        }
        total += n as u64;
    }
    let _ = s.shutdown(Shutdown::Write);
    total
}

/// Shutdown done right, for the servers whose bug is elsewhere: waits for
/// every client thread, so open connections finish (the contract's
/// shutdown thread ends the process when the grace period is over,
/// whatever is still open). Handles are never pruned before: a few bytes
/// per connection ever served, fine for a server that lives for one test.
pub fn join_all<T>(clients: Vec<JoinHandle<T>>) {
    for client in clients {
        let _ = client.join();
    }
}

/// The contract's [`Model`] for a test server: a name and no expected
/// limits. A broken server's bug must show as a plain failure of its case,
/// never one excused as a limit of its design, and the control has none.
pub const fn model(name: &'static str) -> Model {
    Model {
        name,
        expected_limits: &[],
    }
}
