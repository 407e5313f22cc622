//! TASK: a lost datagram makes `request` wait for ever; retry, give up, and take only the server's reply.
//!
//! `request` sends `payload` to a UDP echo server and returns the reply,
//! copied into `reply`. It works on loopback on a quiet day. But UDP
//! promises nothing: a request or a reply can be lost (a full receive
//! buffer drops it without a word to anyone), and an unconnected socket
//! receives datagrams from any peer that knows its port, so the first
//! datagram to arrive need not be the server's answer.
//!
//! Make `request`:
//! - wait at most [`TIMEOUT`](crate::TIMEOUT) for each attempt, and send
//!   again when it passes;
//! - give up after [`ATTEMPTS`](crate::ATTEMPTS) attempts with an error
//!   of kind `ErrorKind::TimedOut`, rather than hang;
//! - ignore datagrams that do not come from `server`.
//!
//! Edit this file only. Grade with `just exercise udp-retry` (or
//! `bash scripts/exercise.sh udp-retry`).
//!
//! Syscalls: `sendto(2)`, `recvfrom(2)`; a receive timeout is
//! `setsockopt(SO_RCVTIMEO)` (`UdpSocket::set_read_timeout`), after which
//! `recvfrom` fails with `EAGAIN` (`WouldBlock`).

use std::io;
use std::net::{SocketAddr, UdpSocket};

/// Sends `payload` to `server` from `socket` and waits for the reply,
/// which is copied into `reply`; returns its length.
pub fn request(
    socket: &UdpSocket,
    server: SocketAddr,
    payload: &[u8],
    reply: &mut [u8],
) -> io::Result<usize> {
    socket.send_to(payload, server)?;
    let (n, _from) = socket.recv_from(reply)?;
    Ok(n)
}
