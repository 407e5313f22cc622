//! Exercise `iterative-to-threads`: serve each client on its own thread.
//!
//! Edit `src/starter.rs`; grade with `just exercise iterative-to-threads`.
//! The `solution` feature builds `src/solution.rs` instead.

#![warn(missing_docs)]

#[cfg(not(feature = "solution"))]
#[path = "starter.rs"]
mod imp;
#[cfg(feature = "solution")]
#[path = "solution.rs"]
mod imp;

pub use imp::serve;

/// No expected limits: once solved, this server must pass every
/// conformance case, including the ones that need many clients at once.
pub const MODEL: echo_protocol::Model = echo_protocol::Model {
    name: "ex-iterative-to-threads",
    expected_limits: &[],
};
