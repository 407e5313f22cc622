//! Exercise `chat-slow-member`: a threads chat server whose broadcast
//! writes to each member's socket while holding the chat's lock, so one
//! member that stops reading stalls every room.
//!
//! Edit `src/starter.rs`; grade with `just exercise chat-slow-member`.
//! The `solution` feature builds `src/solution.rs` instead.

#![warn(missing_docs)]

#[cfg(not(feature = "solution"))]
#[path = "starter.rs"]
mod imp;
#[cfg(feature = "solution")]
#[path = "solution.rs"]
mod imp;

pub use imp::{Member, serve};

/// The chat is not an echo server; the contract is used for its flags,
/// readiness line and shutdown only.
pub const MODEL: echo_protocol::Model = echo_protocol::Model {
    name: "ex-chat-slow-member",
    expected_limits: &[],
};
