//! Exercise `prefork-accept-lock`: N pre-forked workers take turns in
//! `accept(2)` under a file lock, as in Stevens' UNP section 30.7, and must
//! still serve N clients at once.
//!
//! Edit `src/starter.rs`; grade with `just exercise prefork-accept-lock`.
//! The `solution` feature builds `src/solution.rs` instead. The lock
//! (`lock.rs`) and the forking parent (`pool.rs`) are given and need no
//! change.

#![warn(missing_docs)]

pub mod lock;
pub mod pool;

#[cfg(not(feature = "solution"))]
#[path = "starter.rs"]
mod imp;
#[cfg(feature = "solution")]
#[path = "solution.rs"]
mod imp;

pub use imp::serve;

/// `--workers` workers serve that many clients at once; the one beyond
/// waits in the listen backlog, as in `echo-prefork`. With the default of 4
/// workers the cases that need more clients than that served at once fall
/// short; `max-conns` is not enforced by this server at all.
pub const MODEL: echo_protocol::Model = echo_protocol::Model {
    name: "ex-prefork-accept-lock",
    expected_limits: &[
        "concurrent-200",
        "idle-500",
        "beyond-fd-setsize",
        "max-conns",
    ],
};

/// This server's flag.
#[derive(Debug, Clone, clap::Args)]
pub struct Flags {
    /// Worker processes
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: u32,
}
