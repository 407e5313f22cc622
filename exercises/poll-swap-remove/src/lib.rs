//! Exercise `poll-swap-remove`: a `poll(2)` loop keeps its `pollfd` array
//! and its clients in two vectors in the same order, and must keep them so
//! when a client leaves.
//!
//! Edit `src/starter.rs`; grade with `just exercise poll-swap-remove`.
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
    name: "ex-poll-swap-remove",
    expected_limits: &[],
};
