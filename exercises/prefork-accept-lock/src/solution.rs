//! SOLUTION of `prefork-accept-lock`: the lock covers `accept` and nothing
//! else.
//!
//! The starter's guard was a local of the loop body, so it lived until the
//! end of the body: through the whole echo, however long the client
//! stayed. The other workers slept in `fcntl(F_SETLKW)`, not in `accept`,
//! and N workers served like one. Here the guard lives in a block that
//! ends with the `accept`, so the lock is released as soon as this worker
//! has its client, and the next worker can go to `accept` while this one
//! serves. (Dropping it by hand with `drop(turn)` right after `accept`
//! works too; a block makes the extent of the critical section visible.)
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

/// One worker: take the lock, accept, release the lock, serve the client,
/// repeat.
fn worker(listener: &TcpListener, lock: &AcceptLock, config: &Config) -> i32 {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let accepted = {
            let _turn = match lock.lock() {
                Ok(guard) => guard,
                Err(e) => {
                    eprintln!("worker {}: lock: {e}", std::process::id());
                    return 1;
                }
            };
            listener.accept()
        }; // the lock is released here, before the client is served
        let mut stream = match accepted {
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
