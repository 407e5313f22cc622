//! TASK: four workers, one client at a time. Find out why, and fix it.
//!
//! `serve` forks `--workers` processes (4 by default) that share the
//! listener. Following Stevens (UNP 30.7), each worker takes a file lock
//! around `accept(2)`, so that only one of them sleeps in `accept` at a
//! time. But connect four clients with `nc 127.0.0.1 7000` and type in
//! each: only the first one gets its echo. The others are connected (the
//! kernel completed their handshake) and wait, however idle the first one
//! is, until it leaves. Four processes serve like one.
//!
//! Make the four workers serve four clients at once, still taking turns
//! in `accept`. Edit this file only. Grade with
//! `just exercise prefork-accept-lock` (or
//! `bash scripts/exercise.sh prefork-accept-lock`).
//!
//! Syscalls: `fcntl(F_SETLKW)` and `fcntl(F_SETLK, F_UNLCK)` (in
//! `lock.rs`), `accept(2)`, `read(2)`, `write(2)`; the forking is in
//! `pool.rs`.

use std::io;
use std::net::TcpListener;

use echo_protocol::{Config, accept_error_is_transient, echo_until_eof};

use crate::Flags;
use crate::lock::AcceptLock;
use crate::pool::prefork;

/// Forks the workers; each runs `worker`.
pub fn serve(listener: TcpListener, config: &Config, flags: Flags) -> io::Result<()> {
    prefork(&listener, config, flags.workers, worker)
}

/// One worker: take the lock, accept, serve the client, repeat.
fn worker(listener: &TcpListener, lock: &AcceptLock, config: &Config) -> i32 {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let _turn = match lock.lock() {
            Ok(guard) => guard,
            Err(e) => {
                eprintln!("worker {}: lock: {e}", std::process::id());
                return 1;
            }
        };
        let mut stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if accept_error_is_transient(&e) => continue,
            // EINVAL: the parent shut the listener down. Any other error
            // ends this worker too (echo-prefork backs off on EMFILE).
            Err(_) => return 0,
        };
        config.log(format_args!("worker {}: client", std::process::id()));
        if let Err(e) = echo_until_eof(&mut stream, &mut buf) {
            config.log(format_args!("worker {}: {e}", std::process::id()));
        }
    }
}
