//! Exercise `fork-reaper`: a process per client, with a parent that cleans
//! up after its children (it reaps them) and after itself (it closes its
//! copy of every client's socket).
//!
//! Edit `src/starter.rs`; grade with `just exercise fork-reaper`.
//! The `solution` feature builds `src/solution.rs` instead.

#![warn(missing_docs)]

#[cfg(not(feature = "solution"))]
#[path = "starter.rs"]
mod imp;
#[cfg(feature = "solution")]
#[path = "solution.rs"]
mod imp;

pub use imp::serve;

/// No expected limits: every conformance case must pass once solved.
pub const MODEL: echo_protocol::Model = echo_protocol::Model {
    name: "ex-fork-reaper",
    expected_limits: &[],
};
