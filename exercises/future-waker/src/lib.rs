//! Exercise `future-waker`: a one-shot channel whose receiving half is a
//! future written by hand, and must arrange to be polled again.
//!
//! Edit `src/starter.rs`; grade with `just exercise future-waker`. The
//! `solution` feature builds `src/solution.rs` instead. The lesson behind
//! it is `cargo run -p lessons -- coroutines` (`notes/lessons-coroutines.md`,
//! "A generator written by hand"); the executor's side of the same contract
//! is the exercise `async-requeue-waker`.

#![warn(missing_docs)]

#[cfg(not(feature = "solution"))]
#[path = "starter.rs"]
mod imp;
#[cfg(feature = "solution")]
#[path = "solution.rs"]
mod imp;

pub use imp::{Receiver, Sender, channel};
