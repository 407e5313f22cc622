//! Exercise `ticket-lost-update`: a ticket booth shared by threads, where
//! checking that a ticket is left and taking it must be one step.
//!
//! Edit `src/starter.rs`; grade with `just exercise ticket-lost-update`.
//! The `solution` feature builds `src/solution.rs` instead. The lesson
//! behind it is `cargo run -p lessons -- ticket-race`
//! (`notes/lessons-threads-and-locks.md`).

#![warn(missing_docs)]

#[cfg(not(feature = "solution"))]
#[path = "starter.rs"]
mod imp;
#[cfg(feature = "solution")]
#[path = "solution.rs"]
mod imp;

pub use imp::Booth;
