//! `broken-utf8-lines`: a thread-per-client echo server that treats its
//! input as text and gives up on a client that sends anything else.
//!
//! The bug, as it looks in real code: each chunk read goes through
//! `std::str::from_utf8` (to log it, or because the protocol "is lines of
//! text"), and an error ends the connection as "not text". Typed text
//! passes, `nc` passes, every ASCII test passes. Correct: an echo carries
//! bytes; never decode what you only forward.
//!
//! Caught by `all-bytes`: the values 0x80 to 0xff are not UTF-8 on their
//! own, the server closes, and the client gets 0 of 256 bytes. `small` and
//! the line-based cases send ASCII and pass; the cases with pseudo-random
//! data (`large-1mib`, `half-close`...) catch it too.
//!
//! Syscalls: `accept(2)`, `clone(2)`, blocking `read(2)`, `write(2)`.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::process::ExitCode;

use test_servers::{model, read_some, thread_per_client};

fn main() -> ExitCode {
    echo_protocol::run(&model("broken-utf8-lines"), thread_per_client(client))
}

fn client(mut s: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    while let Some(n) = read_some(&mut s, &mut buf) {
        // THE BUG: the bytes are decoded, and a client whose bytes are not
        // text is dropped.
        let Ok(text) = std::str::from_utf8(&buf[..n]) else {
            break;
        };
        if s.write_all(text.as_bytes()).is_err() {
            break;
        }
    }
    let _ = s.shutdown(Shutdown::Write);
}
