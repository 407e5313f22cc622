//! A file-transfer server and client: upload, download and list over TCP,
//! the seeds' homework ("a concurrent upload and download server on
//! select") built on this workspace's readiness loop.
//!
//! - [`proto`]: the frame (4-byte big-endian length, JSON header, body),
//!   every limit as a named constant, the name rule.
//! - [`server`]: one mio loop, a state machine per connection, synchronous
//!   file I/O, SHA-256 verified before an upload is renamed into place.
//! - [`client`]: blocking, one request per connection, verifies what it
//!   downloads.
//!
//! Syscalls: those of [`server`] and [`client`]; this file holds none.
//! The chapter is `notes/file-transfer.md`.

#![warn(missing_docs)]

pub mod client;
pub mod proto;
pub mod server;

/// The server as the common contract sees it: `ft-server` takes the usual
/// `--addr`, `--max-conns`, `--verbose`, prints `listening on ADDR`, and
/// ends cleanly on SIGINT/SIGTERM. It is no echo model, so no limits.
pub const SERVER: echo_protocol::Model = echo_protocol::Model {
    name: "ft-server",
    expected_limits: &[],
};
