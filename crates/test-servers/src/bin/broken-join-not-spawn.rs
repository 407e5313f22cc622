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

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;

use echo_protocol::{Config, Model, NoFlags, accept_error_is_transient};

const MODEL: Model = Model {
    name: "broken-join-not-spawn",
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
        // THE BUG: waits for this client before accepting the next.
        let _ = thread::spawn(move || client(stream)).join();
    }
    Ok(())
}

fn client(mut s: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if s.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = s.shutdown(Shutdown::Write);
}
