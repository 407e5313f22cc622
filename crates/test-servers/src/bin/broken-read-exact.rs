//! `broken-read-exact`: a thread-per-client echo server that reads fixed
//! 64-byte blocks with `read_exact` and echoes each whole block.
//!
//! The bug, as it looks in real code: a server written for a protocol of
//! fixed-size records, reused as an echo; or `read_exact` where `read` was
//! meant. A client whose message is not a multiple of 64 bytes waits for
//! an echo that comes only when more bytes arrive. Correct: echo whatever
//! one `read` returned.
//!
//! Caught by `small`: its 12-byte message never comes back. `all-bytes`
//! sends 256 bytes, four whole blocks, and passes; the streaming cases
//! catch it at their last partial block.
//!
//! Syscalls: `accept(2)`, `clone(2)`, blocking `read(2)`, `write(2)`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::ExitCode;

use test_servers::{model, thread_per_client};

fn main() -> ExitCode {
    echo_protocol::run(&model("broken-read-exact"), thread_per_client(client))
}

fn client(mut s: TcpStream) {
    // THE BUG: a block is echoed only once all 64 bytes are in.
    let mut block = [0u8; 64];
    while s.read_exact(&mut block).is_ok() {
        if s.write_all(&block).is_err() {
            break;
        }
    }
    let _ = s.shutdown(Shutdown::Write);
}
