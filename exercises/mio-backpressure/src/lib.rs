//! Exercise `mio-backpressure`: an edge-triggered loop that stops reading a
//! client at its output cap must come back to it by itself once the output
//! drains, since no new event comes for bytes already waiting.
//!
//! Edit `src/starter.rs`; grade with `just exercise mio-backpressure`.
//! The `solution` feature builds `src/solution.rs` instead.

#![warn(missing_docs)]

#[cfg(not(feature = "solution"))]
#[path = "starter.rs"]
mod imp;
#[cfg(feature = "solution")]
#[path = "solution.rs"]
mod imp;

pub use imp::serve;

/// No expected limits: one thread, but it never blocks on a client.
pub const MODEL: echo_protocol::Model = echo_protocol::Model {
    name: "ex-mio-backpressure",
    expected_limits: &[],
};
