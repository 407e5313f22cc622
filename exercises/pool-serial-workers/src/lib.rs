//! Exercise `pool-serial-workers`: a fixed pool of worker threads sharing
//! one job queue, which must run as many jobs at once as it has workers.
//!
//! Edit `src/starter.rs`; grade with `just exercise pool-serial-workers`.
//! The `solution` feature builds `src/solution.rs` instead. The lesson
//! behind it is `cargo run -p lessons -- pools`
//! (`notes/lessons-queues-and-pools.md`).

#![warn(missing_docs)]

#[cfg(not(feature = "solution"))]
#[path = "starter.rs"]
mod imp;
#[cfg(feature = "solution")]
#[path = "solution.rs"]
mod imp;

pub use imp::ThreadPool;
