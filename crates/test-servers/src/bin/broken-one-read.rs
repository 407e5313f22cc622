//! `broken-one-read`: a thread-per-client echo server that reads once per
//! connection, echoes what it got and closes.
//!
//! The bug, as it looks in real code: "the request" is taken to be what
//! the first `read` returns, as if TCP delivered messages. A short message
//! arrives in one segment and one read, so every small test passes. A
//! megabyte arrives in many reads; all but the first are lost. Correct:
//! loop until `read` returns 0.
//!
//! Caught by `large-1mib`: the echo stops at the first read's size
//! (64 KiB at most) and the connection closes. `small` and `all-bytes`
//! fit in one read and pass; the other streaming cases catch it too.
//!
//! Syscalls: `accept(2)`, `clone(2)`, one blocking `read(2)`, `write(2)`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::ExitCode;

use test_servers::{model, thread_per_client};

fn main() -> ExitCode {
    echo_protocol::run(&model("broken-one-read"), thread_per_client(client))
}

fn client(mut s: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    // THE BUG: one read is taken for the whole request.
    if let Ok(n @ 1..) = s.read(&mut buf) {
        let _ = s.write_all(&buf[..n]);
    }
    let _ = s.shutdown(Shutdown::Write);
}
