//! Exercise `pool-deadlock`: a thread-pool echo server that serves
//! everybody while it is lightly loaded, and nobody ever again once its
//! queue fills up.
//!
//! Edit `src/starter.rs`; grade with `just exercise pool-deadlock`.
//! The `solution` feature builds `src/solution.rs` instead.

#![warn(missing_docs)]

#[cfg(not(feature = "solution"))]
#[path = "starter.rs"]
mod imp;
#[cfg(feature = "solution")]
#[path = "solution.rs"]
mod imp;

pub use imp::{PoolFlags, serve};

/// The same limits as `echo-thread-pool`, for the same reason: with the
/// default 64 workers, the cases that hold more clients connected at once
/// leave the extra ones waiting for a worker that never frees up.
pub const MODEL: echo_protocol::Model = echo_protocol::Model {
    name: "ex-pool-deadlock",
    expected_limits: &["concurrent-200", "idle-500", "beyond-fd-setsize"],
};
