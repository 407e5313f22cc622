//! Exercise `sigio-overflow`: a signal-driven loop learns which socket has
//! news from each real-time signal's `si_fd`, until the queue of those
//! signals is full; then the kernel sends a bare `SIGIO` that names no
//! socket, and the loop must find the lost news by itself.
//!
//! Edit `src/starter.rs`; grade with `just exercise sigio-overflow`.
//! The `solution` feature builds `src/solution.rs` instead.

#![warn(missing_docs)]

#[cfg(not(feature = "solution"))]
#[path = "starter.rs"]
mod imp;
#[cfg(feature = "solution")]
#[path = "solution.rs"]
mod imp;

pub use imp::{block_io_signals, serve};

/// No expected limits: one thread, but it never blocks on a client.
pub const MODEL: echo_protocol::Model = echo_protocol::Model {
    name: "ex-sigio-overflow",
    expected_limits: &[],
};
