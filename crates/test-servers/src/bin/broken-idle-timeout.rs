//! `broken-idle-timeout`: a thread-per-client echo server that drops a
//! connection silent for more than a second.
//!
//! The bug, as it looks in real code: `set_read_timeout(Some(1 s))` added
//! to stop idle clients from holding threads, with the timeout treated as
//! the end of the conversation. Busy clients never notice. Correct: no
//! timeout shorter than what the protocol allows a client to think (for an
//! echo, none), or at least one that is documented and configurable.
//!
//! Caught by `idle-500`: its 500 clients stay silent for 2 s, then each
//! sends a byte to a closed connection. The other cases keep talking (a
//! round trip every 100 ms in `slow-reader`); `beyond-fd-setsize` may lose
//! its first clients too when connecting 1,100 takes over a second.
//!
//! Syscalls: `accept(2)`, `clone(2)`, `setsockopt(SO_RCVTIMEO)`, blocking
//! `read(2)`, `write(2)`.

use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

use test_servers::{echo_client, model, thread_per_client};

fn main() -> ExitCode {
    echo_protocol::run(&model("broken-idle-timeout"), thread_per_client(client))
}

fn client(mut s: TcpStream) {
    // THE BUG: silence for a second is taken for a dead client.
    // (`echo_client` ends the conversation on any read error, the
    // timeout's `EAGAIN` included.)
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    echo_client(&mut s);
}
