//! Exercise `async-requeue-waker`: the executor's waker must put its task
//! back on the run queue whenever it is woken and not already queued,
//! also while the task is being polled (a task that yields wakes itself
//! from inside its own poll).
//!
//! Edit `src/starter.rs`; grade with `just exercise async-requeue-waker`.
//! The `solution` feature builds `src/solution.rs` instead. The reactor,
//! the socket futures and the echo server are ready-made in `runtime.rs`, a
//! smaller cousin of `echo-async-from-scratch`'s.

#![warn(missing_docs)]

use std::io;
use std::net::TcpListener;
use std::rc::Rc;

use echo_protocol::{Config, NoFlags};
use runtime::Reactor;

#[cfg(not(feature = "solution"))]
#[path = "starter.rs"]
mod imp;
#[cfg(feature = "solution")]
#[path = "solution.rs"]
mod imp;

pub mod runtime;

pub use imp::Executor;

/// No expected limits: the echo server of `runtime.rs`, on this executor.
pub const MODEL: echo_protocol::Model = echo_protocol::Model {
    name: "ex-async-requeue-waker",
    expected_limits: &[],
};

/// The echo server of `runtime.rs`, run by [`Executor`].
pub fn serve(listener: TcpListener, config: &Config, _flags: NoFlags) -> io::Result<()> {
    let reactor = Rc::new(Reactor::new()?);
    let executor = Rc::new(Executor::new(Rc::clone(&reactor)));
    runtime::start(executor.clone(), reactor, listener, config)?;
    executor.run()
}
