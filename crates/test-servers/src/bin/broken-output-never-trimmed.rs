//! A thread-per-client echo server whose per-connection output buffer only
//! grows: bytes already echoed are never dropped from it.
//!
//! The bug: output is appended to a `Vec` and written from a `sent` offset,
//! the shape every event loop uses for partial writes, but the sent prefix
//! is never drained (`pending.drain(..sent)` or a `clear` once all is sent
//! is missing). Every byte a client ever sent stays in memory until it
//! disconnects. Short tests never notice; a long transfer does.
//!
//! Caught by the fault `soak` (the server's PSS grows past its bound long
//! before the gigabyte is through).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;

use echo_protocol::{Config, NoFlags};
use test_servers::{join_all, model, next_client};

fn echo(mut stream: TcpStream) -> io::Result<()> {
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut sent = 0;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // BUG: the already-sent prefix `pending[..sent]` is kept forever.
        pending.extend_from_slice(&buf[..n]);
        while sent < pending.len() {
            sent += stream.write(&pending[sent..])?;
        }
    }
    stream.shutdown(Shutdown::Write)
}

fn serve(listener: TcpListener, config: &Config, _: NoFlags) -> io::Result<()> {
    // Every client thread, so that shutdown can wait for them.
    let mut clients = Vec::new();
    while let Some(stream) = next_client(&listener, config)? {
        clients.push(thread::spawn(move || echo(stream)));
    }
    // Shutdown done right, so that the one bug above is the only one.
    join_all(clients);
    Ok(())
}

fn main() -> ExitCode {
    echo_protocol::run(&model("broken-output-never-trimmed"), serve)
}
