//! The cases: small client programs over blocking `std` sockets, one file
//! per theme.
//!
//! - [`basic`]: one client, one conversation (`small`, `all-bytes`,
//!   `large-1mib`, `pipelined-1000`, `sequential-1000`).
//! - [`pressure`]: clients that do not read when the server would like them
//!   to (`half-close`, `slow-reader`, `interleaved`).
//! - [`resets`]: clients that vanish (`reset-isolation`, `reset-pending`,
//!   `reset-before-accept`, `churn`).
//! - [`crowds`]: many connections at once (`concurrent-200`, `idle-500`,
//!   `beyond-fd-setsize`).
//!
//! Every socket gets `TCP_NODELAY` and 5 s read and write timeouts; reading
//! verifies each chunk as it arrives, so a lost or wrong byte fails at once
//! instead of waiting out a timeout; each case has an overall deadline.
//! A case returns [`Failure::Broken`] for what no design excuses (wrong,
//! lost or surplus bytes, a leak, a spin, unbounded memory, a server that
//! stopped serving) and [`Failure::Short`] for a client not served in time
//! or turned away, which a design may declare as an expected limit.

mod basic;
mod client;
mod crowds;
mod pressure;
mod resets;

pub(crate) use client::{IO_TIMEOUT, connect, is_timeout, pseudo_random, round_trip};

use crate::{Failure, Target};

/// `Ok(detail)` for a pass (the detail may be empty), `Err(what went wrong)`.
pub(crate) type CaseResult = Result<String, Failure>;

pub(crate) fn run(case: &str, target: &Target) -> CaseResult {
    let addr = target.addr;
    match case {
        "small" => basic::small(addr),
        "all-bytes" => basic::all_bytes(addr),
        "large-1mib" => basic::large(addr),
        "pipelined-1000" => basic::pipelined(addr),
        "sequential-1000" => basic::sequential(addr),
        "half-close" => pressure::half_close(addr),
        "slow-reader" => pressure::slow_reader(target),
        "interleaved" => pressure::interleaved(addr),
        "reset-isolation" => resets::reset_isolation(addr),
        "reset-pending" => resets::reset_pending(target),
        "reset-before-accept" => resets::reset_before_accept(target),
        "churn" => resets::churn(target),
        "concurrent-200" => crowds::concurrent(addr),
        "idle-500" => crowds::idle(addr),
        "beyond-fd-setsize" => crowds::beyond_fd_setsize(target),
        other => Err(Failure::Broken(format!("no such case: {other}"))),
    }
}

/// Turns an echo error into a failure of the right kind: wrong or lost
/// bytes are breakage, late ones (or none at all) a shortfall.
pub(crate) fn echo_failure(e: &client::EchoError, who: &str) -> Failure {
    let detail = format!("{who}: {e}");
    if e.is_breakage() {
        Failure::Broken(detail)
    } else {
        Failure::Short(detail)
    }
}
