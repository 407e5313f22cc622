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
//! thread-per-client accept loop ([`for_each_client`], on [`accept`]), the
//! plain echo of a client thread ([`echo_client`]), the drain at shutdown
//! ([`join_all`]), and the non-blocking readiness loop ([`poll_loop`]).
//! Where the bug *is* that skeleton (a join in the accept loop, an unwrap
//! of the peer's address, a loop that spins on `EMFILE`, a return with no
//! drain, an `fd_set`), the bin writes its own loop instead, so the bug
//! stays where a reader looks for it.
//!
//! Syscalls: `accept(2)` (blocking here, non-blocking `accept4(2)` in
//! [`poll_loop`]), `read(2)`, `write(2)`, `shutdown(2)`, `poll(2)`.

pub mod poll_loop;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;

use echo_protocol::{Config, accept_error_is_transient};

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

/// The accept loop of a thread-per-client server: accepts until shutdown is
/// requested and hands each connection to `each`, which spawns (or forks,
/// or turns away) as its server does. Returns `Ok(())` on shutdown at once,
/// without waiting for what `each` started: a server that must drain keeps
/// the handles and passes them to [`join_all`] afterwards.
///
/// The shutdown check comes after `accept` because the contract's shutdown
/// thread wakes a blocked `accept` by connecting to the listener; that
/// wake-up connection is dropped, never served.
pub fn for_each_client(
    listener: &TcpListener,
    config: &Config,
    mut each: impl FnMut(TcpStream) -> io::Result<()>,
) -> io::Result<()> {
    loop {
        let Some((stream, _)) = accept(listener)? else {
            continue;
        };
        if config.shutdown.requested() {
            return Ok(());
        }
        each(stream)?;
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
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
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
