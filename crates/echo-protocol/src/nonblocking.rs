//! The echo protocol for one non-blocking socket, and accepting on a
//! non-blocking listener: what every readiness model (busy-poll, select,
//! poll, epoll, mio) does once it knows a socket is ready. They differ only
//! in how they learn that, which is the lesson; this is the part that would
//! otherwise be the same in each of them.
//!
//! Syscalls: `read(2)` and `write(2)` on a socket in non-blocking mode
//! (they return `EAGAIN` instead of waiting), `accept4(2)` on a
//! non-blocking listener, `open(2)` of `/dev/null` for the spare
//! descriptor.
//!
//! Trade-offs: [`Echo`] keeps what was read and not yet written back, up to
//! [`OUTPUT_CAP`]; a model must stop reading a connection whose
//! [`Echo::wants_read`] is false, or back-pressure is lost. [`Echo::read_from`]
//! reads *once* per call (at most the scratch buffer): level-triggered
//! models call it once per wake-up for fairness, edge-triggered ones loop
//! until [`Read::WouldBlock`].

use std::fs::File;
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpListener, TcpStream};

use nix::errno::Errno;

use crate::Config;

/// Most unsent output kept for one connection before the model stops
/// reading from it. A client that sends without reading would otherwise
/// make the server buffer without bound; past the cap its own socket
/// buffers fill and its writes block, which is the back-pressure it would
/// get from a blocking server.
pub const OUTPUT_CAP: usize = 1024 * 1024;

/// Most bytes read from one connection per read: the size of the scratch
/// buffer a model passes to [`Echo::read_from`].
pub const READ_CHUNK: usize = 64 * 1024;

/// What one non-blocking read brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// This many bytes, now pending.
    Data(usize),
    /// The client half-closed; nothing more will come.
    Eof,
    /// Nothing there now (readiness can be stale, or the socket drained).
    WouldBlock,
}

/// One client's echo: bytes read and not yet written back
/// (`pending[sent..]`), whether the client has half-closed, and how much
/// was echoed.
#[derive(Debug, Default)]
pub struct Echo {
    pending: Vec<u8>,
    sent: usize,
    read_closed: bool,
    echoed: u64,
}

impl Echo {
    /// Nothing read yet.
    pub fn new() -> Echo {
        Echo::default()
    }

    /// Bytes read and not yet written back.
    pub fn unsent(&self) -> usize {
        self.pending.len() - self.sent
    }

    /// Whether to read from this client now: it has not half-closed and
    /// its output is not piling up past [`OUTPUT_CAP`].
    pub fn wants_read(&self) -> bool {
        !self.read_closed && self.unsent() <= OUTPUT_CAP
    }

    /// Whether there is output to write. Ask the kernel about writability
    /// only then: a socket is writable nearly all the time.
    pub fn wants_write(&self) -> bool {
        self.unsent() > 0
    }

    /// The client half-closed and everything was written back: shut our
    /// side down and close.
    pub fn done(&self) -> bool {
        self.read_closed && self.unsent() == 0
    }

    /// Whether the client has half-closed.
    pub fn read_closed(&self) -> bool {
        self.read_closed
    }

    /// Bytes written back so far.
    pub fn echoed(&self) -> u64 {
        self.echoed
    }

    /// One `read` into `scratch`, appended to the pending output.
    /// `Interrupted` is retried; other errors (a reset) are the caller's.
    pub fn read_from(
        &mut self,
        stream: &mut impl io::Read,
        scratch: &mut [u8],
    ) -> io::Result<Read> {
        loop {
            return match stream.read(scratch) {
                Ok(0) => {
                    self.read_closed = true;
                    Ok(Read::Eof)
                }
                Ok(n) => {
                    // Drop the already-sent prefix before growing, so the
                    // buffer stays within OUTPUT_CAP + one read even for a
                    // client that reads its echo slowly but never catches up.
                    if self.sent > 0 {
                        self.pending.drain(..self.sent);
                        self.sent = 0;
                    }
                    self.pending.extend_from_slice(&scratch[..n]);
                    Ok(Read::Data(n))
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(Read::WouldBlock),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    /// Writes pending output until it is all written or the socket is full
    /// (`EAGAIN`); returns the bytes written by this call.
    pub fn flush_to(&mut self, stream: &mut impl io::Write) -> io::Result<usize> {
        let mut wrote = 0;
        while self.sent < self.pending.len() {
            match stream.write(&self.pending[self.sent..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.sent += n;
                    self.echoed += n as u64;
                    wrote += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.sent == self.pending.len() {
            self.pending.clear();
            self.sent = 0;
            // A burst grew the buffer up to OUTPUT_CAP; give that back
            // rather than keep a MiB per quiet connection.
            self.pending.shrink_to(READ_CHUNK);
        }
        Ok(wrote)
    }

    /// One turn for a socket whose readiness comes as edges (mio's
    /// contract, real-time signals): nothing will announce again bytes
    /// that were announced once, so the caller keeps the level itself in
    /// `unread`, "the socket may still hold bytes or an EOF". An edge sets
    /// it; only `EAGAIN` or EOF, seen here, clears it, since only they
    /// prove there is nothing left to miss. Reads while `unread`, with
    /// room under the cap, at most `max_reads` times (the fairness bound),
    /// then writes back what it can: whether the turn came from a writable
    /// edge or from the reads, most of the time the whole echo fits in the
    /// socket buffer at once. The caller shuts down its side when
    /// [`Echo::done`], and must come back by itself while
    /// `*unread && self.wants_read()`: no edge will come for those bytes.
    pub fn edge_turn(
        &mut self,
        stream: &mut (impl io::Read + io::Write),
        unread: &mut bool,
        max_reads: usize,
        scratch: &mut [u8],
    ) -> io::Result<()> {
        let mut reads = 0;
        while *unread && self.wants_read() && reads < max_reads {
            reads += 1;
            match self.read_from(stream, scratch)? {
                Read::Data(_) => {}
                Read::Eof | Read::WouldBlock => *unread = false,
            }
        }
        if self.wants_write() {
            self.flush_to(stream)?;
        }
        Ok(())
    }
}

/// A client [`accept_one`] brought, admitted or refused: refused (closed
/// and logged) when `open` connections already reach `--max-conns`;
/// otherwise made non-blocking (`accept4` does not pass the listener's
/// `O_NONBLOCK` on to the new socket, and one blocking socket would stall
/// the whole loop on its first read) and logged as connected.
pub fn admit(
    stream: TcpStream,
    peer: SocketAddr,
    open: usize,
    config: &Config,
) -> Option<TcpStream> {
    if open >= config.max_conns {
        config.log(format_args!(
            "{peer}: refused, {} connections open",
            config.max_conns
        ));
        return None;
    }
    if let Err(e) = stream.set_nonblocking(true) {
        config.log(format_args!("{peer}: cannot make non-blocking: {e}"));
        return None;
    }
    config.log(format_args!("{peer}: connected"));
    Some(stream)
}

/// What [`accept_one`] did.
#[derive(Debug)]
pub enum Accepted {
    /// A new client, its socket still in blocking mode.
    Client(TcpStream, SocketAddr),
    /// The backlog is empty.
    Empty,
    /// Something failed for one connection only (reset in the backlog, a
    /// network error), or a connection was refused for want of
    /// descriptors (said in the error): accept the next.
    Skipped(io::Error),
    /// Nothing to do until the next wake-up (`ENOBUFS`, `ENOMEM`, or no
    /// spare descriptor to shed with); the connection stays in the backlog.
    Later(io::Error),
}

/// One spare descriptor (`/dev/null`), kept open so that a server out of
/// descriptors can still take a connection from the backlog and close it.
#[derive(Debug)]
pub struct Spare(Option<File>);

impl Spare {
    /// Opens the spare.
    pub fn new() -> io::Result<Spare> {
        Ok(Spare(Some(File::open("/dev/null")?)))
    }
}

// ANCHOR: accept-one
/// One `accept` on a non-blocking listener.
///
/// Out of descriptors (`EMFILE`, `ENFILE`), the connection stays in the
/// backlog, so a readiness model is told about the listener again at once
/// and would spin at 100 % CPU. Instead: free the spare descriptor, take
/// the connection and close it (the client sees the connection closed
/// rather than hanging), take the spare back.
pub fn accept_one(listener: &TcpListener, spare: &mut Spare) -> Accepted {
    let err = match listener.accept() {
        Ok((stream, peer)) => {
            crate::no_delay(&stream);
            return Accepted::Client(stream, peer);
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock => return Accepted::Empty,
        Err(e) => e,
    };
    match Errno::from_raw(err.raw_os_error().unwrap_or(0)) {
        Errno::EMFILE | Errno::ENFILE => {
            if spare.0.take().is_none() {
                // Reopening the spare failed last time: try again, and
                // leave the backlog to the next wake-up.
                spare.0 = File::open("/dev/null").ok();
                return Accepted::Later(err);
            }
            // The connection is closed before the spare is reopened: it
            // holds the very descriptor the spare gave up.
            let shed = listener.accept().map(|(stream, peer)| {
                drop(stream);
                peer
            });
            spare.0 = File::open("/dev/null").ok();
            match shed {
                Ok(peer) => Accepted::Skipped(io::Error::new(
                    err.kind(),
                    format!("{peer}: refused, out of descriptors ({err})"),
                )),
                // `accept4` reserves a descriptor before it looks at the
                // queue, so EMFILE comes even with an empty backlog. Said
                // as `Skipped`, a caller that accepts without a readiness
                // report (edge-triggered, busy-poll) would try again at once.
                Err(e) if e.kind() == ErrorKind::WouldBlock => Accepted::Empty,
                Err(_) => Accepted::Skipped(err),
            }
        }
        _ if crate::accept_error_is_transient(&err) => Accepted::Skipped(err),
        _ => Accepted::Later(err),
    }
}
// ANCHOR_END: accept-one

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};

    /// A writer that takes at most `room` bytes, then says `WouldBlock`.
    struct Tight {
        got: Vec<u8>,
        room: usize,
    }

    impl io::Write for Tight {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_keep_order_and_the_cap_stops_reading() {
        let mut echo = Echo::new();
        let mut scratch = vec![0; 1000];
        let input: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        let mut src = &input[..];
        let mut out = Tight {
            got: Vec::new(),
            room: 700,
        };
        while let Read::Data(_) = echo.read_from(&mut src, &mut scratch).unwrap() {
            echo.flush_to(&mut out).unwrap();
            out.room += 300;
        }
        assert!(echo.read_closed() && !echo.done());
        while echo.wants_write() {
            out.room += 500;
            echo.flush_to(&mut out).unwrap();
        }
        assert!(echo.done());
        assert_eq!(out.got, input);
        assert_eq!(echo.echoed(), 3000);

        // Past OUTPUT_CAP unsent, the model must stop reading.
        let mut echo = Echo::new();
        let big = vec![7u8; OUTPUT_CAP + 1];
        let mut scratch = vec![0; big.len()];
        echo.read_from(&mut &big[..], &mut scratch).unwrap();
        assert!(!echo.wants_read() && echo.wants_write());
    }

    #[test]
    fn a_drained_socket_is_would_block_not_eof() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut echo = Echo::new();
        let mut scratch = vec![0; READ_CHUNK];
        assert_eq!(
            echo.read_from(&mut server, &mut scratch).unwrap(),
            Read::WouldBlock
        );
        client.write_all(b"hello").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        // Bounded: the bytes and the EOF are on loopback already or soon.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !echo.read_closed() {
            assert!(std::time::Instant::now() < deadline, "no EOF");
            echo.read_from(&mut server, &mut scratch).unwrap();
        }
        echo.flush_to(&mut server).unwrap();
        assert!(echo.done());
        let mut back = Vec::new();
        server.shutdown(std::net::Shutdown::Write).unwrap();
        client.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"hello");
    }

    #[test]
    fn accept_one_reports_an_empty_backlog() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut spare = Spare::new().unwrap();
        assert!(matches!(accept_one(&listener, &mut spare), Accepted::Empty));
        let _c = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match accept_one(&listener, &mut spare) {
                Accepted::Client(_, _) => break,
                Accepted::Empty => assert!(std::time::Instant::now() < deadline, "never accepted"),
                other => panic!("{other:?}"),
            }
        }
    }
}
