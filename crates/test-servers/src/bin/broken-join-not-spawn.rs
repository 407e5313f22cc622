//! `broken-join-not-spawn`: a "thread-per-client" echo server that joins
//! each client's thread right after spawning it.
//!
//! The bug, as it looks in real code: `thread::spawn(...).join()` in the
//! accept loop, written to "not leak threads" or to surface a panic. The
//! accept loop waits for each client to finish, so this is the iterative
//! server with an extra thread. One client at a time passes everything.
//! Correct: keep the handle (or detach) and join at shutdown.
//!
//! Caught by `concurrent-200`: the second client gets no echo while the
//! first is connected. The cases with one client at a time pass; the
//! other many-client cases catch it too.
//!
//! Syscalls: `accept(2)`, `clone(2)`, `futex(2)` (the join), blocking
//! `read(2)`, `write(2)`.

use std::io;
use std::net::TcpListener;
use std::process::ExitCode;
use std::thread;

use echo_protocol::{Config, NoFlags};
use test_servers::{echo_client, model, next_client};

fn main() -> ExitCode {
    echo_protocol::run(&model("broken-join-not-spawn"), serve)
}

fn serve(listener: TcpListener, config: &Config, _: NoFlags) -> io::Result<()> {
    while let Some(mut stream) = next_client(&listener, config)? {
        // THE BUG: waits for this client before accepting the next.
        let _ = thread::spawn(move || echo_client(&mut stream)).join();
    }
    Ok(())
}
