//! One client, one conversation: the echo itself, byte for byte.
//!
//! Syscalls: `connect(2)`, `write(2)` (one per message where the case says
//! so), `read(2)` with `SO_RCVTIMEO`. Trade-off: these cases are fast and
//! say exactly which byte went wrong, but they never make the server juggle
//! two clients; that is the other files' job.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::client::{MIB, Writer, connect, expect_echo, pseudo_random, round_trip};
use super::{CaseResult, echo_failure};

pub(crate) fn small(addr: SocketAddr) -> CaseResult {
    let mut s = connect(addr, "client")?;
    round_trip(&mut s, b"hello, echo\n", "client")?;
    Ok(String::new())
}

pub(crate) fn all_bytes(addr: SocketAddr) -> CaseResult {
    let mut s = connect(addr, "client")?;
    let every: Vec<u8> = (0..=255).collect();
    s.write_all(&every)
        .map_err(|e| format!("client: write failed: {e}"))?;
    expect_echo(&mut s, &every, Instant::now() + super::IO_TIMEOUT)
        .map_err(|e| echo_failure(&e, "client"))?;
    Ok(String::new())
}

pub(crate) fn large(addr: SocketAddr) -> CaseResult {
    let mut s = connect(addr, "client")?;
    let data = Arc::new(pseudo_random(MIB, 0x1a2b_3c4d));
    let writer = Writer::start(&s, data.clone(), false)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    expect_echo(&mut s, &data, deadline).map_err(|e| echo_failure(&e, "client"))?;
    writer.finish()?;
    Ok(String::new())
}

/// One `write(2)` per message, from a writer thread, with a small client
/// receive buffer; the case starts reading once the writer is done or has
/// stalled for [`PIPELINED_STALL`].
///
/// Why this shape: it is what catches "one read per readiness event" under
/// edge-triggered epoll. Edge-triggered epoll wakes a server once per
/// arrival, so a server that keeps up with the client reads every small
/// message in its own wake-up and the bug never shows (reading at once,
/// the case passed such a server whenever the client was the slower side).
/// With the client not reading yet, the server's echo soon blocks (or
/// queues), messages pile up behind it as one edge, and a server that
/// reads once per edge leaves the rest unread for good. Writing the
/// concatenation in large chunks, the other alternative, would hand every
/// server a few big reads and hide per-message handling altogether. A
/// correct blocking server passes: the 250 KB fit in the socket buffers,
/// or the writer stalls and reading starts then.
pub(crate) fn pipelined(addr: SocketAddr) -> CaseResult {
    const COUNT: usize = 1000;
    let mut s = super::client::connect_small_rcvbuf(addr, 16 * super::client::KIB, "client")?;
    let (data, starts) = pipelined_messages(COUNT);
    let pieces: Vec<(usize, usize)> = starts
        .iter()
        .zip(starts.iter().skip(1).chain([&data.len()]))
        .map(|(&a, &b)| (a, b))
        .collect();
    let data = Arc::new(data);
    let writer = Writer::start_pieces(&s, data.clone(), pieces, false)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    writer.wait_done_or_stalled(PIPELINED_STALL, deadline);
    expect_echo(&mut s, &data, deadline).map_err(|e| {
        let mut f = echo_failure(&e, "client");
        // Name the message too: it tells reordering from corruption.
        if let Some(offset) = e.mismatch_at() {
            let index = starts.partition_point(|&start| start <= offset) - 1;
            f = crate::Failure::Broken(format!("{} (in message {index} of {COUNT})", f.detail()));
        } else {
            let index = starts.partition_point(|&start| start <= e.got);
            f = match f {
                crate::Failure::Short(d) => {
                    crate::Failure::Short(format!("{d} ({index} of {COUNT} messages back)"))
                }
                broken => broken,
            };
        }
        f
    })?;
    writer.finish()?;
    Ok(format!(
        "{} bytes in {COUNT} messages, one write each",
        data.len()
    ))
}

/// How long `pipelined-1000`'s writer may make no progress before the case
/// starts reading anyway.
const PIPELINED_STALL: Duration = Duration::from_millis(100);

/// Message `i` is 1..=512 bytes long, starts with `#i:` (cut short when the
/// message is) and goes on with a pattern that depends on `i`. Returns the
/// concatenation and where each message starts in it.
pub(crate) fn pipelined_messages(count: usize) -> (Vec<u8>, Vec<usize>) {
    let mut data = Vec::new();
    let mut starts = Vec::with_capacity(count);
    for i in 0..count {
        let len = 1 + (i * 131 + 7) % 512;
        let mut msg = format!("#{i}:").into_bytes();
        msg.extend((0..len).map(|j| b'a' + ((i + j) % 26) as u8));
        msg.truncate(len);
        starts.push(data.len());
        data.extend_from_slice(&msg);
    }
    (data, starts)
}

pub(crate) fn sequential(addr: SocketAddr) -> CaseResult {
    let deadline = Instant::now() + Duration::from_secs(30);
    let start = Instant::now();
    for i in 0..1000 {
        let who = format!("connection {i}");
        let mut s = connect(addr, &who)?;
        let msg = format!("{:<31}\n", format!("sequential {i}"));
        s.write_all(msg.as_bytes())
            .map_err(|e| format!("{who}: write failed: {e}"))?;
        expect_echo(&mut s, msg.as_bytes(), deadline).map_err(|e| echo_failure(&e, &who))?;
    }
    Ok(format!(
        "{:.0} connections/s",
        1000.0 / start.elapsed().as_secs_f64()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelined_messages_have_every_length_and_their_index() {
        let (data, starts) = pipelined_messages(1000);
        assert_eq!(starts.len(), 1000);
        let lens: Vec<usize> = starts
            .windows(2)
            .map(|w| w[1] - w[0])
            .chain([data.len() - starts[999]])
            .collect();
        assert!(lens.iter().all(|&l| (1..=512).contains(&l)));
        assert_eq!(lens.iter().min(), Some(&1));
        assert_eq!(lens.iter().max(), Some(&512));
        assert!(data[starts[123]..].starts_with(b"#123:"));
    }
}
