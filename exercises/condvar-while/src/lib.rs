//! Exercise `condvar-while`: a blocking queue built from a `Mutex` and a
//! `Condvar`, whose consumers must re-check the condition they waited for.
//!
//! Edit `src/starter.rs`; grade with `just exercise condvar-while`. The
//! `solution` feature builds `src/solution.rs` instead. The lesson behind
//! it is `cargo run -p lessons -- condvar`
//! (`notes/lessons-coordination.md`).

#![warn(missing_docs)]

#[cfg(not(feature = "solution"))]
#[path = "starter.rs"]
mod imp;
#[cfg(feature = "solution")]
#[path = "solution.rs"]
mod imp;

pub use imp::Queue;
