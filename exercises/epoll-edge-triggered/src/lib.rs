//! Exercise `epoll-edge-triggered`: an edge-triggered event loop must drain
//! every source until `EAGAIN`, or it waits for an edge that never comes.
//!
//! Edit `src/starter.rs`; grade with `just exercise epoll-edge-triggered`.
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
    name: "ex-epoll-edge-triggered",
    expected_limits: &[],
};
