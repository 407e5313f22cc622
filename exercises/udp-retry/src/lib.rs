//! Exercise `udp-retry`: one request and its reply over UDP, where a
//! datagram may be lost and any peer may write to the socket.
//!
//! Edit `src/starter.rs`; grade with `just exercise udp-retry`. The
//! `solution` feature builds `src/solution.rs` instead. The lesson behind
//! it is `cargo run -p lessons -- udp` (`notes/lessons-udp.md`, "Loss and
//! the retry").

#![warn(missing_docs)]

use std::time::Duration;

#[cfg(not(feature = "solution"))]
#[path = "starter.rs"]
mod imp;
#[cfg(feature = "solution")]
#[path = "solution.rs"]
mod imp;

pub use imp::request;

/// How long one attempt waits for its reply before the request is sent
/// again. Long next to a loopback round trip (microseconds), short next
/// to a person waiting.
pub const TIMEOUT: Duration = Duration::from_millis(200);

/// Attempts before [`request`] gives up with `ErrorKind::TimedOut`: the
/// longest a request can take is `ATTEMPTS × TIMEOUT`, one second.
pub const ATTEMPTS: u32 = 5;
