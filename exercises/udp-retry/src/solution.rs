//! Reference solution of `udp-retry`: a receive timeout per attempt, a
//! bounded number of attempts, and only the server's datagrams taken.
//!
//! What it does not solve: a reply that was late rather than lost comes
//! twice, and the second copy waits in the socket for the next request to
//! take it as its own. Matching replies to requests needs an id in the
//! payload, as DNS does; the grade sends each request once its
//! predecessor's copies are gone.
//!
//! Syscalls: `setsockopt(SO_RCVTIMEO)`, `sendto(2)`, `recvfrom(2)`.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, UdpSocket};
use std::time::Instant;

use crate::{ATTEMPTS, TIMEOUT};

/// Sends `payload` to `server` from `socket` and waits for the reply,
/// which is copied into `reply`; returns its length. Sends again after
/// each [`TIMEOUT`] without a reply, and fails with `TimedOut` after
/// [`ATTEMPTS`] attempts.
pub fn request(
    socket: &UdpSocket,
    server: SocketAddr,
    payload: &[u8],
    reply: &mut [u8],
) -> io::Result<usize> {
    for _ in 0..ATTEMPTS {
        socket.send_to(payload, server)?;
        // The deadline belongs to the attempt, not to each receive: a
        // stranger's datagram must not buy the attempt more time.
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            socket.set_read_timeout(Some(left))?;
            match socket.recv_from(reply) {
                Ok((n, from)) if from == server => return Ok(n),
                // Anyone may write to an unconnected socket: not ours.
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
    Err(io::Error::new(
        ErrorKind::TimedOut,
        format!("no reply from {server} after {ATTEMPTS} attempts"),
    ))
}
