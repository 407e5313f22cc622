//! A thread-per-client echo server whose `serve` returns as soon as
//! shutdown is requested, without waiting for its client threads.
//!
//! The bug: returning from `main` ends the process, and every detached
//! client thread with it, mid-`write` if need be. It looks harmless in real
//! code because the accept loop reads like the correct one; what is missing
//! is the drain after it (the real thread-per-client model counts live
//! connections and waits for them, bounded by the grace period). Open
//! transfers are cut: the client gets a reset or an early EOF.
//!
//! Caught by the fault `sigterm-mid-transfer` (bytes sent after SIGTERM
//! never come back).

use std::io;
use std::net::TcpListener;
use std::process::ExitCode;
use std::thread;

use echo_protocol::{Config, NoFlags, echo_until_eof};
use test_servers::{model, next_client};

fn serve(listener: TcpListener, config: &Config, _: NoFlags) -> io::Result<()> {
    while let Some(mut stream) = next_client(&listener, config)? {
        thread::spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            let _ = echo_until_eof(&mut stream, &mut buf);
        });
    }
    // BUG: no drain. The client threads are detached; returning here ends
    // the process under them.
    Ok(())
}

fn main() -> ExitCode {
    echo_protocol::run(&model("broken-exit-on-sigterm"), serve)
}
