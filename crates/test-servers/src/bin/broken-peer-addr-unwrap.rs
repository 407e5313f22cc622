//! `broken-peer-addr-unwrap`: a thread-per-client echo server that asks
//! every accepted socket for its peer's address, for the log, and unwraps
//! the answer.
//!
//! The bug, as it looks in real code: `stream.peer_addr().unwrap()` right
//! after the accept (typically `incoming()`, which throws away the address
//! `accept(2)` returned), in the accepting thread. It never fails in testing.
//! But Linux hands `accept(2)` connections that were reset while they
//! waited in the listen queue; on such a socket `getpeername(2)` fails with
//! `ENOTCONN`, the unwrap panics in the main thread, and the process exits
//! with every client. Correct: take the address `accept` returned (std's
//! `listener.accept()`), or log "unknown peer" on error.
//!
//! Caught by `reset-before-accept`: 200 connections reset the moment they
//! are established, most of them still in the queue. `churn` resets its
//! connections only after a round trip (long accepted by then), and the
//! other cases never reset before accept.
//!
//! Syscalls: `accept(2)`, `getpeername(2)`, `clone(2)`, blocking `read(2)`,
//! `write(2)`.

use std::io;
use std::net::TcpListener;
use std::process::ExitCode;
use std::thread;

use echo_protocol::{Config, NoFlags};
use test_servers::{echo_client, model, next_client};

fn main() -> ExitCode {
    echo_protocol::run(&model("broken-peer-addr-unwrap"), serve)
}

fn serve(listener: TcpListener, config: &Config, _: NoFlags) -> io::Result<()> {
    // `next_client`, like `incoming()`, drops the address `accept`
    // returned, which is what should have been logged.
    while let Some(mut stream) = next_client(&listener, config)? {
        // THE BUG: getpeername(2) fails with ENOTCONN on a connection
        // that was reset before we accepted it.
        let peer = stream.peer_addr().unwrap();
        thread::spawn(move || {
            let total = echo_client(&mut stream);
            let _ = (peer, total); // what --verbose would print
        });
    }
    Ok(())
}
