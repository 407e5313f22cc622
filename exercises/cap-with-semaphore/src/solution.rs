//! Reference solution of `cap-with-semaphore`: a counting semaphore from a
//! mutex and a condition variable caps a thread-per-client server.
//!
//! The acceptor takes a permit before each `accept(2)`, so when all
//! `--max-conns` are in use it sleeps on the condition variable and further
//! clients wait in the listen backlog (connected, their bytes buffered by
//! the kernel) until a client leaves. The alternative not taken is refusing
//! them at once, as the contract's models do: waiting is kinder to bursts,
//! refusing gives a fast, clear answer under overload. A crossbeam bounded
//! channel of tokens would do the same job; the mutex and condvar show what
//! such a channel does inside.
//!
//! Syscalls: `accept(2)`, `read(2)`, `write(2)`; `futex(2)` to sleep and wake.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread;

use echo_protocol::{Config, NoFlags, echo_until_eof};
use parking_lot::{Condvar, Mutex};

/// A counting semaphore: at most `permits` holders at a time.
pub struct Semaphore {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Semaphore {
    /// A semaphore with `permits` permits, all free.
    pub fn new(permits: usize) -> Semaphore {
        Semaphore {
            free: Mutex::new(permits),
            freed: Condvar::new(),
        }
    }

    /// Takes a permit, waiting as long as none is free. The permit goes
    /// back when the returned [`Permit`] is dropped.
    pub fn acquire(self: &Arc<Self>) -> Permit {
        let mut free = self.free.lock();
        // A loop, not an `if`: another thread may take the permit between
        // the notification and this thread getting the lock back.
        while *free == 0 {
            self.freed.wait(&mut free);
        }
        *free -= 1;
        Permit {
            semaphore: Arc::clone(self),
        }
    }

    fn release(&self) {
        *self.free.lock() += 1;
        // One permit came back, so one waiter can use it: waking them all
        // would only send the rest back to sleep.
        self.freed.notify_one();
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
        // While all permits are taken a shutdown signal cannot wake this
        // wait; the shutdown thread's grace period ends the process then.
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
