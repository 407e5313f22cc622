//! The thread-per-client echo server: the accepting thread spawns one
//! thread per connection, and each thread runs the blocking echo loop
//! every blocking model shares, [`echo_protocol::echo_until_eof`], for its
//! one client.
//!
//! Run with `cargo run -p echo-thread-per-client -- --addr 127.0.0.1:7000`,
//! then `nc 127.0.0.1 7000` in as many terminals as you like.
//!
//! # Syscalls
//!
//! `accept(2)` in the main thread; `clone(2)` (through `pthread_create`,
//! with a `mmap(2)`ed stack) per connection; blocking `read(2)`, `write(2)`,
//! `shutdown(2)` and `close(2)` in the client thread. The kernel scheduler
//! does the multiplexing: a thread blocked in `read` costs no CPU.
//!
//! # Trade-offs
//!
//! Good at: keeping the simple blocking code of the iterative model while
//! serving clients concurrently. A slow or idle client blocks only its own
//! thread. Back-pressure needs no code: a client that does not read makes
//! its thread's `write_all` block, and that thread stops reading.
//!
//! Where it breaks: every connection costs a thread, so a kernel task, a
//! stack (64 KiB of address space here, [`STACK_SIZE`], touched lazily) and a
//! context switch per wake-up. Thousands of mostly idle clients mean
//! thousands of threads; `pthread_create` can fail (`EAGAIN`, from
//! `RLIMIT_NPROC` or `kernel.threads-max`), and the scheduler's work grows
//! with the number of runnable threads. `--max-conns` caps the thread count.
//! The live-connection counter is the only shared state; anything more (a
//! shared cache, a chat room) would need locks, and their contention.
//!
//! # What the benchmark shows
//!
//! Throughput scales with clients up to the number of cores, then levels
//! off; latency stays low at moderate counts. Context switches per second
//! grow with the client count, and at thousands of connections memory
//! (thread stacks) and scheduling overhead show up, where the event-driven
//! models stay flat.

#![warn(missing_docs)]

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, Thread};
use std::time::Instant;

use echo_protocol::{
    ACCEPT_BACKOFF, Config, GRACE_PERIOD, Model, NoFlags, accept_error_is_shortage,
    accept_error_is_transient, echo_until_eof,
};

/// This model, as the contract sees it: it meets every conformance case.
pub const MODEL: Model = Model {
    name: "echo-thread-per-client",
    expected_limits: &[],
};

/// Stack size of a client thread. The echo loop needs a few KiB; std's
/// default of 2 MiB would reserve 20 GiB of address space for 10,000
/// clients. The stack is only reserved: pages are backed as they are touched.
pub const STACK_SIZE: usize = 64 * 1024;

/// Size of each client thread's read buffer, on the heap, not the stack.
pub const BUF_SIZE: usize = 16 * 1024;

/// What the accepting thread and the client threads share.
struct Shared {
    /// Connections whose thread has not finished yet.
    live: AtomicUsize,
    /// The accepting thread, unparked when `live` drops to 0 so that
    /// shutdown does not have to poll.
    acceptor: Thread,
}

/// One slot in `live`, released when dropped: when the client thread ends,
/// even by panic, or together with the closure when the spawn fails.
struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.acceptor.unpark();
        }
    }
}

/// Accepts connections and gives each one its own thread, until shutdown is
/// requested; then waits up to [`GRACE_PERIOD`] for open connections to end.
pub fn serve(listener: TcpListener, config: &Config, _flags: NoFlags) -> io::Result<()> {
    let shared = Arc::new(Shared {
        live: AtomicUsize::new(0),
        acceptor: thread::current(),
    });
    let mut next_id: u64 = 0;
    // ANCHOR: accept-loop
    loop {
        let (stream, peer) = match listener.accept() {
            Ok((stream, peer)) => {
                // Nagle off, or a 64 KiB echo written 16 KiB at a time
                // waits for delayed ACKs: see `echo_protocol::no_delay`.
                echo_protocol::no_delay(&stream);
                (stream, peer)
            }
            Err(e) if accept_error_is_transient(&e) => continue,
            Err(e) if accept_error_is_shortage(&e) => {
                // Unlike an event loop, we hold no spare descriptor to
                // free: the fds belong to client threads that release
                // them when their client leaves. The failed connection
                // stays in the backlog, so retrying at once would spin;
                // sleeping briefly lets some threads finish first.
                config.log(format_args!("accept: {e} (backing off)"));
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
            Err(e) => return Err(e),
        };
        // The shutdown thread connects once after setting the flag, so a
        // blocked `accept` returns and we get to see it.
        if config.shutdown.requested() {
            drop(stream);
            break;
        }
        // ANCHOR: admission
        // Only this thread increments `live`, so the count cannot grow
        // between the check and the increment; threads ending can only
        // lower it, which errs on the side of refusing.
        if shared.live.load(Ordering::Acquire) >= config.max_conns {
            config.log(format_args!(
                "{peer}: refused, {} connections open",
                config.max_conns
            ));
            drop(stream);
            continue;
        }
        shared.live.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(Arc::clone(&shared));
        next_id += 1;
        // Cloning `Config` copies a few words and bumps one `Arc`.
        let client_config = config.clone();
        let spawned = thread::Builder::new()
            .name(format!("client-{next_id}"))
            .stack_size(STACK_SIZE)
            .spawn(move || {
                let _slot = slot;
                serve_client(stream, peer, &client_config);
            });
        // A detached thread: nobody joins it, `live` tells when it is done.
        // If the spawn failed (EAGAIN: out of threads or memory), std drops
        // the closure, which closes the stream and releases the slot.
        if let Err(e) = spawned {
            config.log(format_args!("{peer}: cannot spawn a thread: {e}; closed"));
        }
        // ANCHOR_END: admission
    }
    // ANCHOR_END: accept-loop
    drain(listener, &shared, config);
    Ok(())
}

// ANCHOR: shutdown
/// Stops accepting (closing the listener makes new connections fail at
/// once instead of queueing) and waits, bounded by the grace period, for the
/// client threads to finish.
fn drain(listener: TcpListener, shared: &Shared, config: &Config) {
    drop(listener);
    let deadline = Instant::now() + GRACE_PERIOD;
    loop {
        let live = shared.live.load(Ordering::Acquire);
        if live == 0 {
            config.log(format_args!("shutdown: all connections closed"));
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            config.log(format_args!(
                "shutdown: {live} connections still open, leaving"
            ));
            return;
        }
        // Woken by the last `Slot` to drop; `park_timeout` may also return
        // early for no reason, hence the loop.
        thread::park_timeout(deadline - now);
    }
}
// ANCHOR_END: shutdown

/// The client thread's body: echo, then log how it ended.
fn serve_client(mut stream: TcpStream, peer: SocketAddr, config: &Config) {
    config.log(format_args!("{peer}: connected"));
    let mut buf = vec![0u8; BUF_SIZE];
    match echo_until_eof(&mut stream, &mut buf) {
        Ok(bytes) => config.log(format_args!("{peer}: closed after {bytes} bytes")),
        // A reset or broken pipe ends this thread only.
        Err(e) => config.log(format_args!("{peer}: {e}")),
    }
}
