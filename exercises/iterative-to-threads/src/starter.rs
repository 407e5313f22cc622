//! TASK: serve each client on its own thread.
//!
//! This is the iterative server: it accepts one client, echoes until that
//! client closes, and only then accepts the next. A second client waits in
//! the listen backlog, connected but unanswered, for as long as the first
//! one stays. Change `serve` so that every accepted connection is echoed on
//! a thread of its own (`std::thread::spawn`), while the loop goes straight
//! back to `accept(2)`.
//!
//! Edit this file only. Grade with `just exercise iterative-to-threads`
//! (or `bash scripts/exercise.sh iterative-to-threads`): the full
//! conformance suite must pass, `concurrent-200` included.
//!
//! Syscalls: `accept(2)`, `read(2)`, `write(2)`, `shutdown(2)`.

use std::io;
use std::net::TcpListener;

use echo_protocol::{Config, NoFlags, echo_until_eof};

/// Accepts clients one after the other and echoes each until it closes.
pub fn serve(listener: TcpListener, config: &Config, _flags: NoFlags) -> io::Result<()> {
    for stream in listener.incoming() {
        // The shutdown thread connects once to wake this accept up.
        if config.shutdown.requested() {
            break;
        }
        let mut stream = match stream {
            Ok(s) => s,
            // A client that reset before we accepted it, or a full fd table:
            // neither is a reason to stop serving the others.
            Err(e) => {
                config.log(format_args!("accept: {e}"));
                continue;
            }
        };
        // While this call runs, nobody else is served.
        if let Err(e) = echo_until_eof(&mut stream, &mut [0u8; 16 * 1024]) {
            config.log(format_args!("client: {e}"));
        }
    }
    Ok(())
}
