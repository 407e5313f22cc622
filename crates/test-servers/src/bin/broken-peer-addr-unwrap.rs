//! `broken-peer-addr-unwrap`: a thread-per-client echo server that asks
//! every accepted socket for its peer's address, for the log, and unwraps
//! the answer.
//!
//! The bug, as it looks in real code: `stream.peer_addr().unwrap()` right
//! after `incoming()`, in the accepting thread. It never fails in testing.
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

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;

use echo_protocol::{Config, Model, NoFlags, accept_error_is_transient};

const MODEL: Model = Model {
    name: "broken-peer-addr-unwrap",
    expected_limits: &[],
};

fn main() -> ExitCode {
    echo_protocol::run(&MODEL, serve)
}

fn serve(listener: TcpListener, config: &Config, _: NoFlags) -> io::Result<()> {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) if accept_error_is_transient(&e) => continue,
            Err(e) => return Err(e),
        };
        if config.shutdown.requested() {
            return Ok(());
        }
        // THE BUG: getpeername(2) fails with ENOTCONN on a connection
        // that was reset before we accepted it.
        let peer = stream.peer_addr().unwrap();
        thread::spawn(move || client(stream, peer));
    }
    Ok(())
}

fn client(mut s: TcpStream, peer: std::net::SocketAddr) {
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
        total += n;
    }
    let _ = s.shutdown(Shutdown::Write);
    let _ = (peer, total); // what --verbose would print
}
