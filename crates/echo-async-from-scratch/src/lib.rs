//! The async-from-scratch echo server: an async runtime written here, with
//! no async crate, and the echo as `async fn`s on top. It is built in four
//! steps, one module each, each readable in one go, and they follow seed
//! 003's path from epoll callbacks to `Future`, `Task` and `await`:
//!
//! 1. [`reactor`]: epoll, and per descriptor a readiness bit and a waker
//!    slot for each direction; an edge sets the bit and wakes the task
//!    (the seed's `selector.register(fd, EVENT_READ, callback)` and
//!    `loop()`, with a waker in place of the callback).
//! 2. [`executor`]: tasks (`Pin<Box<dyn Future>>` in a slab), a run queue
//!    of task ids, and the `Waker` that puts a task back on it (the seed's
//!    `Task.step` and `add_done_callback`).
//! 3. [`net`]: accept, read and write as futures that try the syscall and,
//!    on `EAGAIN`, leave their waker and return `Pending` (the seed's
//!    `Future`, `set_result` and `yield from`).
//! 4. `server`: the echo as an `async fn` per connection, the accept loop,
//!    `--max-conns`, the shutdown eventfd as one more future (the seed's
//!    `async def` and `await`).
//!
//! Run with `cargo run -p echo-async-from-scratch -- --addr 127.0.0.1:7000`
//! and connect as many `nc 127.0.0.1 7000` as you like: one thread serves
//! all.
//!
//! # Syscalls
//!
//! `epoll_create1(2)`; `epoll_ctl(EPOLL_CTL_ADD)` once per descriptor,
//! edge-triggered, for both directions; `epoll_wait(2)`; `accept4(2)`,
//! `read(2)`, `write(2)` on non-blocking sockets; `shutdown(2)` after a
//! half-close; `open(2)` of `/dev/null` for the spare descriptor.
//!
//! # Trade-offs
//!
//! Against the hand-written epoll loop: the code of a connection reads
//! top to bottom like the blocking echo, and the compiler builds the state
//! machine; the runtime adds a task table, a run queue and a waker per
//! task (a few hundred bytes per connection), a lock and an atomic flag
//! per wake-up, and a poll of the task, on top of the same syscalls. The
//! readiness bits keep those syscalls to what the epoll loop makes.
//! Against tokio: one thread, no timers worth the name, no cross-thread
//! wake-ups that interrupt the sleep, no cancellation beyond dropping a
//! task: what an echo needs, and small enough to read.

#![warn(missing_docs)]

pub mod executor;
pub mod net;
pub mod reactor;
mod server;
mod slab;

use echo_protocol::Model;

pub use echo_protocol::nonblocking::{OUTPUT_CAP, READ_CHUNK};
pub use server::{READS_PER_TURN, serve, start};

/// This model, as the contract sees it: it meets every conformance case.
pub const MODEL: Model = Model {
    name: "echo-async-from-scratch",
    expected_limits: &[],
};
