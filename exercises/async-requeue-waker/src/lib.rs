//! Exercise `async-requeue-waker`: the executor's waker must put its task
//! back on the run queue whenever it is woken and not already queued,
//! also while the task is being polled (a task that yields wakes itself
//! from inside its own poll).
//!
//! Edit `src/starter.rs`; grade with `just exercise async-requeue-waker`.
//! The `solution` feature builds `src/solution.rs` instead. The reactor,
//! the socket futures and the echo server are the model's
//! (`echo-async-from-scratch`); only the executor is here.

#![warn(missing_docs)]

use std::io;
use std::net::TcpListener;
use std::rc::Rc;

use echo_async_from_scratch::reactor::Reactor;
use echo_protocol::{Config, NoFlags};

#[cfg(not(feature = "solution"))]
#[path = "starter.rs"]
mod imp;
#[cfg(feature = "solution")]
#[path = "solution.rs"]
mod imp;

pub use imp::Executor;

/// No expected limits: the model's server, on this crate's executor.
pub const MODEL: echo_protocol::Model = echo_protocol::Model {
    name: "ex-async-requeue-waker",
    expected_limits: &[],
};

/// The model's echo server, run by [`Executor`].
pub fn serve(listener: TcpListener, config: &Config, _flags: NoFlags) -> io::Result<()> {
    let reactor = Rc::new(Reactor::new()?);
    let executor = Rc::new(Executor::new(Rc::clone(&reactor)));
    echo_async_from_scratch::start(executor.clone(), &reactor, listener, config)?;
    executor.run()
}
