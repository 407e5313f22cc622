//! Reference solution of `iterative-to-threads`: a thread per client.
//!
//! The accept loop only accepts; each connection gets a thread that runs the
//! same blocking echo as before. The kernel schedules the threads, so one
//! slow client no longer holds up the rest; the price is a stack and a
//! kernel task per client. `--max-conns` bounds that: a connection beyond
//! it is closed at once.
//!
//! Syscalls: `accept(2)`, `clone(2)` (through `std::thread`), `read(2)`,
//! `write(2)`, `shutdown(2)`.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use echo_protocol::{Config, NoFlags, echo_until_eof};

/// Accepts clients and echoes each on a thread of its own.
pub fn serve(listener: TcpListener, config: &Config, _flags: NoFlags) -> io::Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if config.shutdown.requested() {
            break;
        }
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                config.log(format_args!("accept: {e}"));
                continue;
            }
        };
        // Only this thread increments, so checking then adding cannot let
        // two connections past the limit.
        if active.load(Ordering::SeqCst) >= config.max_conns {
            config.log(format_args!("over --max-conns, closing a connection"));
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let guard = Active(Arc::clone(&active));
        let thread_config = config.clone();
        // Spawning can fail (thread limit, memory): refuse that client only.
        let spawned = thread::Builder::new().spawn(move || {
            let _guard = guard;
            if let Err(e) = echo_until_eof(&mut stream, &mut [0u8; 16 * 1024]) {
                thread_config.log(format_args!("client: {e}"));
            }
        });
        if let Err(e) = spawned {
            config.log(format_args!("cannot spawn a client thread: {e}"));
        }
    }
    // Returning lets main exit, which ends the client threads; the shutdown
    // thread's grace period is what lets open connections finish first.
    Ok(())
}

/// Counts one live client; dropping it, even by a panic, gives the slot back.
struct Active(Arc<AtomicUsize>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
