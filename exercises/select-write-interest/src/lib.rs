//! Exercise `select-write-interest`: a `select(2)` loop must ask about
//! writability only while it has something to write, or it never sleeps.
//!
//! Edit `src/starter.rs`; grade with `just exercise select-write-interest`.
//! The `solution` feature builds `src/solution.rs` instead.

#![warn(missing_docs)]

#[cfg(not(feature = "solution"))]
#[path = "starter.rs"]
mod imp;
#[cfg(feature = "solution")]
#[path = "solution.rs"]
mod imp;

pub use imp::serve;

/// Like `echo-select`: connections whose descriptor is `FD_SETSIZE` (1024)
/// or more cannot be put in an `fd_set`, so they are refused, and the case
/// that holds 1,100 connections at once falls short.
pub const MODEL: echo_protocol::Model = echo_protocol::Model {
    name: "ex-select-write-interest",
    expected_limits: &["beyond-fd-setsize"],
};
