//! Exercise `cap-with-semaphore`: at most `--max-conns` clients served at
//! once, the others waiting for a permit instead of being refused.
//!
//! Edit `src/starter.rs`; grade with `just exercise cap-with-semaphore`.
//! The `solution` feature builds `src/solution.rs` instead.

#![warn(missing_docs)]

#[cfg(not(feature = "solution"))]
#[path = "starter.rs"]
mod imp;
#[cfg(feature = "solution")]
#[path = "solution.rs"]
mod imp;

pub use imp::{Permit, Semaphore, serve};

/// No expected limits: a client over the cap waits, it is never refused,
/// so every conformance case must pass with the default `--max-conns`.
pub const MODEL: echo_protocol::Model = echo_protocol::Model {
    name: "ex-cap-with-semaphore",
    expected_limits: &[],
};
