//! TASK: write the counting semaphore that caps this server.
//!
//! `serve` is a thread-per-client echo server that already takes a permit
//! from a [`Semaphore`] of `--max-conns` permits before each `accept(2)`,
//! and hands the permit to the client's thread, which drops it when the
//! client is gone. But `Semaphore` below is an empty shell: `acquire` never
//! waits, so there is no cap at all, and a thousand clients cost a thousand
//! threads. Make it a real counting semaphore: `acquire` blocks while all
//! permits are taken; dropping a `Permit` gives it back and wakes a waiter.
//! Build it from `parking_lot::{Mutex, Condvar}` (already a dependency).
//!
//! Once it works, a client over the cap is not refused: it stays in the
//! listen backlog, connected, until a permit frees up and it is accepted.
//!
//! Edit this file only. Grade with `just exercise cap-with-semaphore` (or
//! `bash scripts/exercise.sh cap-with-semaphore`).
//!
//! Syscalls: `accept(2)`, `read(2)`, `write(2)`; the waiting itself is a
//! `futex(2)` under the condition variable.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread;

use echo_protocol::{Config, NoFlags, echo_until_eof};

/// A counting semaphore: at most `permits` holders at a time.
pub struct Semaphore {
    // TODO: the number of free permits, and a way to sleep until it grows.
}

impl Semaphore {
    /// A semaphore with `permits` permits, all free.
    pub fn new(permits: usize) -> Semaphore {
        let _ = permits; // TODO: remember how many are free.
        Semaphore {}
    }

    /// Takes a permit, waiting as long as none is free. The permit goes
    /// back when the returned [`Permit`] is dropped.
    pub fn acquire(self: &Arc<Self>) -> Permit {
        // TODO: wait while no permit is free, then take one.
        Permit {
            semaphore: Arc::clone(self),
        }
    }

    fn release(&self) {
        // TODO: give the permit back, and wake one thread waiting for it.
    }
}

/// One taken permit; dropping it releases it.
pub struct Permit {
    semaphore: Arc<Semaphore>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.semaphore.release();
    }
}

/// Accepts clients, each on its own thread, at most `--max-conns` at once.
pub fn serve(listener: TcpListener, config: &Config, _flags: NoFlags) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(config.max_conns));
    loop {
        // Taking the permit *before* accepting is what makes extra clients
        // wait in the kernel's backlog rather than in a thread of ours.
        let permit = permits.acquire();
        let mut stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) => {
                config.log(format_args!("accept: {e}"));
                continue;
            }
        };
        if config.shutdown.requested() {
            return Ok(());
        }
        let thread_config = config.clone();
        let spawned = thread::Builder::new().spawn(move || {
            // Held for the whole life of the connection.
            let _permit = permit;
            if let Err(e) = echo_until_eof(&mut stream, &mut [0u8; 16 * 1024]) {
                thread_config.log(format_args!("client: {e}"));
            }
        });
        if let Err(e) = spawned {
            config.log(format_args!("cannot spawn a client thread: {e}"));
        }
    }
}
