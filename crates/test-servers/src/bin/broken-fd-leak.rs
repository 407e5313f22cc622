//! `broken-fd-leak`: a thread-per-client echo server that keeps a
//! duplicate of every connection's descriptor forever.
//!
//! The bug, as it looks in real code: a list of connections kept "for the
//! stats page" (or for a broadcast), filled with `try_clone()` (a `dup(2)`)
//! at accept and never pruned. The echo itself is right and each client's
//! own handle is closed at the end; the duplicate keeps the socket open,
//! one descriptor per connection served, until the process hits
//! `RLIMIT_NOFILE` and `accept` fails with `EMFILE`. Correct: remove the
//! entry when the connection ends, or keep no descriptor at all (an id,
//! counters).
//!
//! Caught by `churn`: after 3,000 connections the server tree holds about
//! 3,000 more descriptors than before. The other cases miss it: no other
//! case counts descriptors, and the raised limit (here 20,000) is far from
//! reached by their few thousand connections.
//!
//! Syscalls: `accept(2)`, `dup(2)` (through `try_clone`), `clone(2)`,
//! blocking `read(2)`, `write(2)`.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Mutex;
use std::thread;

use echo_protocol::{Config, NoFlags};
use test_servers::{echo_client, model, next_client};

/// Every connection ever accepted, "for the stats page".
static SEEN: Mutex<Vec<TcpStream>> = Mutex::new(Vec::new());

fn main() -> ExitCode {
    echo_protocol::run(&model("broken-fd-leak"), serve)
}

fn serve(listener: TcpListener, config: &Config, _: NoFlags) -> io::Result<()> {
    while let Some(mut stream) = next_client(&listener, config)? {
        // THE BUG: a duplicate descriptor per connection, never removed.
        if let Ok(dup) = stream.try_clone() {
            SEEN.lock().unwrap_or_else(|p| p.into_inner()).push(dup);
        }
        thread::spawn(move || echo_client(&mut stream));
    }
    Ok(())
}
