//! UDP: an echo server and client over datagrams.
//!
//! Seed topic: 001 §1.2 (a UDP echo server, `recvfrom(1024)` then `sendto`
//! back to the address it came from, and a client doing the reverse) and
//! §3.2 (`socketserver.ThreadingUDPServer`, where a "request" is one
//! datagram and the socket to answer on, not a connection). The seeds also
//! say why UDP has no sticky packets: it is a datagram protocol, "one recv
//! per send", and what a recv does not take is thrown away.
//!
//! Syscalls: `socket(AF_INET, SOCK_DGRAM)`, `bind(2)`, `sendto(2)`,
//! `recvfrom(2)` (`UdpSocket::send_to`/`recv_from`), `SO_RCVTIMEO`
//! (`set_read_timeout`), `SO_RCVBUF` (`setsockopt(2)` through nix).
//!
//! What each part shows, and how it is made certain on loopback:
//! - boundaries: three datagrams of different sizes sent before any is read
//!   come out as three `recv_from`s of exactly those sizes;
//! - truncation: a `recv` with a buffer smaller than the datagram returns
//!   the first part and the kernel discards the rest (`MSG_TRUNC` in
//!   `recv(2)`); the next `recv` gets the next datagram;
//! - no connection: one bound socket answers several peers, each datagram
//!   carrying its sender's address;
//! - loss: a datagram that finds its receiver's buffer full is dropped by
//!   the receiving kernel, and the sender is not told. That is real loss,
//!   not a simulation, and it is certain once the buffer is full, so the
//!   client's timeout-and-retry is shown against it. Loss on a wire, and
//!   reordering, cannot be caused on loopback; `notes/lessons-udp.md` shows
//!   `tc netem` in a network namespace for that;
//! - size: a datagram's payload is at most 65,535 − 8 (UDP header) − 20
//!   (IPv4 header) = 65,507 bytes; `sendto` refuses one byte more with
//!   `EMSGSIZE`.
//!
//! Trade-offs: no connection means no handshake, no per-client state and no
//! `accept`: one socket and one thread serve everyone, as the seeds' first
//! server does. The price is that everything TCP does (retransmission,
//! ordering, duplicate removal, flow control) is the application's job;
//! here the client numbers its requests, retries on a timeout, and discards
//! replies to requests it no longer waits for.

use std::collections::HashSet;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::socket::{setsockopt, sockopt};

/// Largest UDP payload over IPv4: 65,535 (the IP length field) − 20 (IPv4
/// header without options) − 8 (UDP header).
pub const MAX_DATAGRAM: usize = 65_507;

/// How often the server looks at its stop flag while no datagram comes.
const POLL_STOP: Duration = Duration::from_millis(50);

/// An echo server on one UDP socket, on a thread of its own.
pub struct EchoServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<ServerStats>>>,
}

/// What a server saw over its life.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ServerStats {
    /// Datagrams received (and echoed).
    pub datagrams: usize,
    /// Distinct peer addresses among them.
    pub peers: usize,
}

impl EchoServer {
    /// Binds 127.0.0.1 on a free port and serves at once.
    pub fn start() -> io::Result<Self> {
        Self::start_on(UdpSocket::bind("127.0.0.1:0")?)
    }

    /// Serves on `socket`, already bound (and possibly already holding
    /// datagrams, which are served first).
    pub fn start_on(socket: UdpSocket) -> io::Result<Self> {
        let addr = socket.local_addr()?;
        // The timeout only lets the loop see the stop flag; a datagram
        // arriving wakes recv_from at once.
        socket.set_read_timeout(Some(POLL_STOP))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || serve(&socket, &flag));
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Where to send.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the loop and returns what it saw.
    pub fn stop(mut self) -> io::Result<ServerStats> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("joined only here");
        thread
            .join()
            .map_err(|_| io::Error::other("server thread panicked"))?
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The seeds' loop: receive a datagram and the address it came from, send
/// the same bytes back there. (The seeds send `data.upper()`; this echoes
/// unchanged, as every server here does.)
fn serve(socket: &UdpSocket, stop: &AtomicBool) -> io::Result<ServerStats> {
    // A buffer the size of the largest datagram: a smaller one would cut
    // datagrams short without telling us (see `truncated_read`).
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut stats = ServerStats::default();
    let mut peers = HashSet::new();
    while !stop.load(Ordering::Relaxed) {
        match socket.recv_from(&mut buf) {
            Ok((n, peer)) => {
                stats.datagrams += 1;
                peers.insert(peer);
                // A reply that cannot be sent is dropped, as the network
                // might drop it: the client's retry covers both.
                let _ = socket.send_to(&buf[..n], peer);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    stats.peers = peers.len();
    Ok(stats)
}

/// A client socket on 127.0.0.1 with a receive timeout.
pub fn client(timeout: Duration) -> io::Result<UdpSocket> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    s.set_read_timeout(Some(timeout))?;
    Ok(s)
}

/// Sends one datagram of each size in `sizes` to `to` before reading any
/// reply, then receives as many, with a buffer large enough for all of them
/// at once; returns the size of each receive.
pub fn datagram_sizes(to: SocketAddr, sizes: &[usize]) -> io::Result<Vec<usize>> {
    let c = client(Duration::from_secs(5))?;
    for (i, &n) in sizes.iter().enumerate() {
        c.send_to(&vec![b'a' + (i % 26) as u8; n], to)?;
    }
    let total: usize = sizes.iter().sum();
    let mut buf = vec![0u8; total.max(1)];
    let mut got = Vec::new();
    for _ in sizes {
        let (n, _) = c.recv_from(&mut buf)?;
        got.push(n);
    }
    Ok(got)
}

/// Sends a datagram of `len` bytes to a socket of our own, then a second
/// one of 3 bytes, and reads each with a `buf_len`-byte buffer: returns
/// what the two reads got.
pub fn truncated_read(len: usize, buf_len: usize) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let rx = client(Duration::from_secs(5))?;
    let tx = client(Duration::from_secs(5))?;
    let big: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    tx.send_to(&big, rx.local_addr()?)?;
    tx.send_to(b"end", rx.local_addr()?)?;
    let mut buf = vec![0u8; buf_len];
    let (n1, _) = rx.recv_from(&mut buf)?;
    let first = buf[..n1].to_vec();
    let (n2, _) = rx.recv_from(&mut buf)?;
    Ok((first, buf[..n2].to_vec()))
}

/// One request-reply exchange with retries: a 4-byte sequence number, then
/// the payload. A reply whose number is not `seq` answers an earlier
/// request that timed out (or is a duplicate) and is skipped. Returns the
/// reply's payload and the number of the attempt it answered.
pub fn request(
    sock: &UdpSocket,
    to: SocketAddr,
    seq: u32,
    payload: &[u8],
    attempts: u32,
) -> io::Result<(Vec<u8>, u32)> {
    request_after(sock, to, seq, payload, attempts, 0)
}

/// [`request`] when the first `already_sent` attempts were sent by the
/// caller: it waits for their reply before sending anything.
pub fn request_after(
    sock: &UdpSocket,
    to: SocketAddr,
    seq: u32,
    payload: &[u8],
    attempts: u32,
    already_sent: u32,
) -> io::Result<(Vec<u8>, u32)> {
    let mut datagram = seq.to_be_bytes().to_vec();
    datagram.extend_from_slice(payload);
    let timeout = sock
        .read_timeout()?
        .ok_or_else(|| io::Error::other("request needs a socket with a read timeout"))?;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    for attempt in 1..=attempts {
        if attempt > already_sent {
            sock.send_to(&datagram, to)?;
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(left))?;
            match sock.recv_from(&mut buf) {
                Ok((n, from)) if from == to && n >= 4 && buf[..4] == seq.to_be_bytes() => {
                    sock.set_read_timeout(Some(timeout))?;
                    return Ok((buf[4..n].to_vec(), attempt));
                }
                // Stale, duplicate or foreign: not the answer we wait for.
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(e) => {
                    sock.set_read_timeout(Some(timeout))?;
                    return Err(e);
                }
            }
        }
    }
    sock.set_read_timeout(Some(timeout))?;
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no reply to request {seq} after {attempts} attempts of {timeout:?}"),
    ))
}

/// The outcome of [`loss_and_retry`].
#[derive(Debug)]
pub struct LossRun {
    /// Filler datagrams sent while nobody read the server's socket.
    pub sent: usize,
    /// How many of them the server received once it started reading.
    pub delivered: usize,
    /// Sends the client's request needed before its reply came.
    pub attempts: u32,
    /// The reply's payload.
    pub reply: Vec<u8>,
}

/// Real loss on loopback: the server's socket gets the smallest receive
/// buffer the kernel allows and, before the server reads it, `fillers`
/// datagrams of 1 KiB; the kernel keeps the first few and drops the rest,
/// the senders none the wiser. The client's first request then finds the
/// buffer full and is dropped too, for certain; the server starts, drains
/// what was kept, and only the client's retry, after its timeout, is
/// answered.
pub fn loss_and_retry(fillers: usize, timeout: Duration) -> io::Result<LossRun> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    // The kernel doubles the value and enforces a minimum of a few KiB.
    setsockopt(&socket, sockopt::RcvBuf, &1)?;
    let server_addr = socket.local_addr()?;

    let filler = client(Duration::from_secs(5))?;
    for i in 0..fillers {
        // Each send succeeds: a full receive buffer is not the sender's
        // problem as far as the kernel is concerned.
        filler.send_to(&[(i % 256) as u8; 1024], server_addr)?;
    }

    let c = client(timeout)?;
    let mut first = 1u32.to_be_bytes().to_vec();
    first.extend_from_slice(b"ping");
    // Attempt 1, sent into the full buffer and dropped. Had it been kept,
    // the server would answer it as soon as it starts and the run would
    // report attempt 1.
    c.send_to(&first, server_addr)?;

    let server = EchoServer::start_on(socket)?;
    let (reply, attempt) = match request_after(&c, server_addr, 1, b"ping", 4, 1) {
        Ok(r) => r,
        Err(e) => {
            let _ = server.stop();
            return Err(e);
        }
    };
    // Count the fillers' echoes to learn how many the server received.
    filler.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut delivered = 0;
    let mut buf = [0u8; 2048];
    while filler.recv_from(&mut buf).is_ok() {
        delivered += 1;
    }
    server.stop()?;
    Ok(LossRun {
        sent: fillers,
        delivered,
        attempts: attempt,
        reply,
    })
}

/// Sends `len` bytes as one datagram to a local socket: `Ok` or the error
/// `sendto` returned.
pub fn send_one(len: usize) -> io::Result<usize> {
    let rx = client(Duration::from_secs(5))?;
    let tx = client(Duration::from_secs(5))?;
    tx.send_to(&vec![0u8; len], rx.local_addr()?)?;
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let (n, _) = rx.recv_from(&mut buf)?;
    Ok(n)
}

/// Runs the lesson.
pub fn run() -> crate::Result {
    let server = EchoServer::start()?;
    let to = server.addr();
    println!("UDP echo server on {to} (one socket, no accept, no connection)");

    let sizes = datagram_sizes(to, &[5, 1000, 60_000])?;
    println!(
        "bounds:  sent datagrams of [5, 1000, 60000] bytes before reading -> received {sizes:?}"
    );

    let (first, second) = truncated_read(2000, 1024)?;
    println!(
        "trunc:   a 2000-byte datagram read with recv(1024) -> {} bytes; the next recv -> {:?} (the other 976 are gone)",
        first.len(),
        String::from_utf8_lossy(&second)
    );

    let a = client(Duration::from_secs(2))?;
    let b = client(Duration::from_secs(2))?;
    let (ra, _) = request(&a, to, 1, b"from a", 3)?;
    let (rb, _) = request(&b, to, 1, b"from b", 3)?;
    println!(
        "peers:   {} and {} share the server's one socket -> {:?}, {:?}",
        a.local_addr()?,
        b.local_addr()?,
        String::from_utf8_lossy(&ra),
        String::from_utf8_lossy(&rb)
    );
    let stats = server.stop()?;
    println!(
        "peers:   the server saw {} datagrams from {} addresses (the bounds client, a and b)",
        stats.datagrams, stats.peers
    );

    let run = loss_and_retry(200, Duration::from_millis(300))?;
    println!(
        "loss:    200 datagrams into a full receive buffer -> {} delivered, {} dropped, no error at the sender",
        run.delivered,
        run.sent - run.delivered
    );
    println!(
        "retry:   the client's request was dropped too; after a 300 ms timeout it resent -> {:?} after {} sends",
        String::from_utf8_lossy(&run.reply),
        run.attempts
    );

    let ok = send_one(MAX_DATAGRAM)?;
    let too_big = send_one(MAX_DATAGRAM + 1);
    println!(
        "size:    {MAX_DATAGRAM} bytes -> sent and received whole ({ok} bytes); {} bytes -> {}",
        MAX_DATAGRAM + 1,
        match &too_big {
            Ok(n) => format!("unexpectedly sent ({n} bytes)"),
            Err(e) => format!("refused: {e}"),
        }
    );
    Ok(())
}
