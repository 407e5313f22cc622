//! Exercise `io-uring-buffer-ownership`: from submission to completion, the
//! kernel owns the buffer an operation points to. A loop that receives into
//! a buffer while a send from it is still in flight echoes garbage.
//!
//! Edit `src/starter.rs`; grade with `just exercise io-uring-buffer-ownership`.
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
    name: "ex-io-uring-buffer-ownership",
    expected_limits: &[],
};
