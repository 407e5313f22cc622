//! Reference solution: a connection has one operation in flight at a time.
//! The next recv into its buffer is submitted only when the send of what
//! the last recv brought has completed in full, so the kernel never writes
//! into bytes it has not finished sending, and a connection is closed only
//! on a completion, when the kernel holds nothing of it.
//!
//! Syscalls: `io_uring_setup(2)`, `io_uring_enter(2)` (submit and wait),
//! with `IORING_OP_ACCEPT`, `IORING_OP_RECV`, `IORING_OP_SEND` and
//! `IORING_OP_POLL_ADD` (the shutdown eventfd); `shutdown(2)`, `close(2)`.
//!
//! Trade-off: one connection never receives and sends at once; throughput
//! per connection is one buffer per round trip through the ring.

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};

use echo_protocol::{Config, NoFlags};
use io_uring::{IoUring, opcode, squeue, types};

const BUFFER_SIZE: usize = 16 * 1024;

/// `user_data` of the two operations that are not a client's; a client's
/// is `slot << 1`, plus 1 for a send.
const ACCEPT: u64 = u64::MAX;
const SHUTDOWN: u64 = u64::MAX - 1;

struct Conn {
    stream: TcpStream,
    buf: Box<[u8]>,
    /// `buf[sent..filled]` was received and is not yet sent back.
    filled: usize,
    sent: usize,
}

struct Loop {
    ring: IoUring,
    conns: Vec<Option<Conn>>,
    open: usize,
}

/// Serves every client until shutdown is requested and the last one left.
pub fn serve(listener: TcpListener, config: &Config, _flags: NoFlags) -> io::Result<()> {
    let mut l = Loop {
        ring: IoUring::new(256)?,
        conns: Vec::new(),
        open: 0,
    };
    let shutdown = types::Fd(config.shutdown.fd().as_raw_fd());
    l.push(
        opcode::PollAdd::new(shutdown, libc::POLLIN as u32)
            .build()
            .user_data(SHUTDOWN),
    )?;
    let accept = opcode::Accept::new(
        types::Fd(listener.as_raw_fd()),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    )
    .flags(libc::SOCK_CLOEXEC)
    .build()
    .user_data(ACCEPT);
    l.push(accept.clone())?;
    let mut stopping = false;
    let mut reaped = Vec::new();
    while !stopping || l.open > 0 {
        match l.ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
        reaped.extend(l.ring.completion().map(|c| (c.user_data(), c.result())));
        for (user_data, result) in reaped.drain(..) {
            match user_data {
                SHUTDOWN => stopping = true,
                ACCEPT => {
                    if result >= 0 {
                        // SAFETY: a new descriptor nothing else owns.
                        let stream = unsafe { TcpStream::from_raw_fd(result) };
                        if !stopping && l.open < config.max_conns {
                            l.admit(stream)?;
                        }
                    }
                    if !stopping {
                        l.push(accept.clone())?;
                    }
                }
                ud if ud & 1 == 0 => l.on_recv((ud >> 1) as usize, result)?,
                ud => l.on_send((ud >> 1) as usize, result)?,
            }
        }
    }
    Ok(())
}

impl Loop {
    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // Each connection has one operation in flight at a time, and is
            // closed only on a completion.
            // SAFETY: so the connection's `buf` this entry points into is
            // neither freed nor touched by another operation until it completes.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    fn admit(&mut self, stream: TcpStream) -> io::Result<()> {
        let conn = Conn {
            stream,
            buf: vec![0; BUFFER_SIZE].into_boxed_slice(),
            filled: 0,
            sent: 0,
        };
        let slot = match self.conns.iter().position(Option::is_none) {
            Some(slot) => {
                self.conns[slot] = Some(conn);
                slot
            }
            None => {
                self.conns.push(Some(conn));
                self.conns.len() - 1
            }
        };
        self.open += 1;
        self.recv(slot)
    }

    fn recv(&mut self, slot: usize) -> io::Result<()> {
        let conn = self.conns[slot].as_mut().expect("a live slot");
        let entry = opcode::Recv::new(
            types::Fd(conn.stream.as_raw_fd()),
            conn.buf.as_mut_ptr(),
            conn.buf.len() as u32,
        )
        .build()
        .user_data((slot as u64) << 1);
        self.push(entry)
    }

    fn send(&mut self, slot: usize) -> io::Result<()> {
        let conn = self.conns[slot].as_mut().expect("a live slot");
        let rest = &conn.buf[conn.sent..conn.filled];
        let entry = opcode::Send::new(
            types::Fd(conn.stream.as_raw_fd()),
            rest.as_ptr(),
            rest.len() as u32,
        )
        .flags(libc::MSG_NOSIGNAL)
        .build()
        .user_data(((slot as u64) << 1) | 1);
        self.push(entry)
    }

    fn close(&mut self, slot: usize) {
        if let Some(conn) = self.conns[slot].take() {
            let _ = conn.stream.shutdown(Shutdown::Write);
            self.open -= 1;
        }
    }

    fn on_recv(&mut self, slot: usize, result: i32) -> io::Result<()> {
        if result <= 0 {
            // EOF or an error. Nothing else is in flight: the last send
            // completed before this recv was submitted.
            self.close(slot);
            return Ok(());
        }
        let conn = self.conns[slot].as_mut().expect("a live slot");
        conn.filled = result as usize;
        conn.sent = 0;
        // The buffer now holds bytes to send: it is the send's until the
        // send completes in full. The next recv waits for that.
        self.send(slot)
    }

    fn on_send(&mut self, slot: usize, result: i32) -> io::Result<()> {
        if result <= 0 {
            self.close(slot);
            return Ok(());
        }
        let conn = self.conns[slot].as_mut().expect("a live slot");
        conn.sent += result as usize;
        if conn.sent < conn.filled {
            // A short send: the rest, from the same buffer.
            return self.send(slot);
        }
        // Everything went out: the buffer is free to receive into.
        self.recv(slot)
    }
}
