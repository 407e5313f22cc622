//! Framing: TCP delivers a stream of bytes, not the writes that made it.
//!
//! Seed topic: the sticky packet (粘包, 001 §2.2). Two `send`s arrive as one
//! `recv`, one `send` arrives as several, and the cure is a header that says
//! how long the message is (`struct.pack("i", len)`), followed by a loop that
//! reads until exactly that many bytes have come.
//!
//! Syscalls: `socket(2)`/`bind(2)`/`listen(2)`/`connect(2)`/`accept(2)` on
//! loopback TCP, `write(2)`, `read(2)`, `recv(2)` with `MSG_PEEK`
//! (`TcpStream::peek`), `setsockopt(TCP_NODELAY)`, `SO_RCVTIMEO`.
//!
//! How the demonstrations are made certain rather than likely: the merge is
//! shown by writing twice, then waiting (with `MSG_PEEK`, which removes
//! nothing, under a deadline) until both writes sit in the receiver's buffer,
//! and only then reading once. A TCP receive buffer is a byte queue; `read`
//! copies whatever is queued up to the buffer's size, across the segments
//! the writes became, so the one read returns both. Reading as soon as the
//! first bytes arrive would usually show the merge too on loopback, but not
//! always, and a lesson that sometimes fails to show its point teaches the
//! wrong thing. The split is shown with a reader whose buffer is smaller
//! than the message: then no timing can make one read return it all.
//!
//! Trade-offs of the fix: a 4-byte big-endian unsigned length prefix lets any
//! bytes be a payload and tells the reader how much to expect, at the cost of
//! a binary header no one types into `nc`, and of a length that comes from
//! the peer and must be capped ([`MAX_FRAME`]) before it sizes an allocation.
//! The alternative, a delimiter such as `\n`, is typeable but needs escaping
//! and a scan of every byte (see `notes/framing.md`).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// Longest payload a frame may announce. The length comes from the peer: an
/// unchecked one (a corrupt or hostile header) would decide how much memory
/// the reader allocates.
pub const MAX_FRAME: usize = 1 << 20;

/// Every wait in this lesson ends by then at the latest.
const DEADLINE: Duration = Duration::from_secs(5);

/// A connected loopback TCP pair: (the connecting side, the accepted side).
pub fn tcp_pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    for s in [&client, &server] {
        s.set_read_timeout(Some(DEADLINE))?;
        s.set_write_timeout(Some(DEADLINE))?;
    }
    Ok((client, server))
}

/// Waits until `stream` has at least `n` unread bytes, without reading them.
fn wait_for_bytes(stream: &TcpStream, n: usize) -> io::Result<()> {
    let deadline = Instant::now() + DEADLINE;
    let mut probe = vec![0u8; n];
    loop {
        // MSG_PEEK copies what is queued and leaves it queued; the read
        // timeout set in tcp_pair bounds each call.
        if stream.peek(&mut probe)? >= n {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{n} bytes did not arrive within {DEADLINE:?}"),
            ));
        }
        // Some bytes are there but not all: the rest is in flight. A short
        // pause instead of a spin; the deadline above bounds the loop.
        thread::sleep(Duration::from_millis(1));
    }
}

/// Sends `first` and `second` as two separate writes, then reads once with a
/// 1024-byte buffer (the seeds' `recv(1024)`) and returns what that one read
/// got: both messages, run together.
pub fn two_writes_one_read(first: &[u8], second: &[u8]) -> io::Result<Vec<u8>> {
    let (mut sender, mut receiver) = tcp_pair()?;
    // Nagle's algorithm off: each write leaves as its own segment, so the
    // merge below happens in the receiver's buffer, not in the sender.
    sender.set_nodelay(true)?;
    sender.write_all(first)?;
    sender.write_all(second)?;
    wait_for_bytes(&receiver, first.len() + second.len())?;
    let mut buf = [0u8; 1024];
    let n = receiver.read(&mut buf)?;
    Ok(buf[..n].to_vec())
}

/// Sends `message` in one write, then reads it back with a buffer of
/// `buf_len` bytes until all of it came; returns the size of each read.
pub fn one_write_many_reads(message: &[u8], buf_len: usize) -> io::Result<Vec<usize>> {
    let (mut sender, mut receiver) = tcp_pair()?;
    // A writer thread: a message larger than the socket buffers would block
    // a write made before anyone reads.
    let owned = message.to_vec();
    let writer = thread::spawn(move || sender.write_all(&owned));
    let mut buf = vec![0u8; buf_len];
    let mut sizes = Vec::new();
    let mut got = Vec::with_capacity(message.len());
    while got.len() < message.len() {
        let n = receiver.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the writer closed early",
            ));
        }
        sizes.push(n);
        got.extend_from_slice(&buf[..n]);
    }
    writer
        .join()
        .map_err(|_| io::Error::other("writer thread panicked"))??;
    if got != message {
        return Err(io::Error::other("the bytes read differ from those written"));
    }
    Ok(sizes)
}

/// Writes one frame: a 4-byte big-endian length, then the payload, in one
/// write (two small writes could go out as two segments, the second held
/// back by Nagle's algorithm until the first is acknowledged).
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    if payload.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {} bytes exceeds {MAX_FRAME}", payload.len()),
        ));
    }
    let len = u32::try_from(payload.len()).expect("MAX_FRAME fits in u32");
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    w.write_all(&frame)
}

/// Reads one frame; `Ok(None)` when the peer closed cleanly between frames.
/// `read_exact` is the seeds' `while recv_size < total_size` loop, for the
/// header as well as the payload: either may come in pieces.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 4];
    // EOF before the first header byte ends the stream cleanly; EOF later is
    // a frame cut short. read_exact cannot tell the two apart, so the first
    // byte is read on its own.
    let first = loop {
        match r.read(&mut header[..1]) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    if first == 0 {
        return Ok(None);
    }
    r.read_exact(&mut header[1..])?;
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("peer announced a frame of {len} bytes, over the {MAX_FRAME} limit"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some(payload))
}

/// A reader that hands out at most one byte per `read`: every frame, header
/// included, then arrives in the smallest pieces a stream can deliver.
pub struct OneByteAtATime<R>(pub R);

impl<R: Read> Read for OneByteAtATime<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(1);
        self.0.read(&mut buf[..n])
    }
}

/// Sends `messages` as frames over loopback TCP, back to back, then closes;
/// the receiver reads frames through `wrap(stream)` until EOF and returns
/// them. With [`OneByteAtATime`] as the wrapper every frame arrives in
/// single bytes.
pub fn framed_round<R: Read>(
    messages: &[&[u8]],
    wrap: impl FnOnce(TcpStream) -> R,
) -> io::Result<Vec<Vec<u8>>> {
    let (mut sender, receiver) = tcp_pair()?;
    let owned: Vec<Vec<u8>> = messages.iter().map(|m| m.to_vec()).collect();
    let writer = thread::spawn(move || -> io::Result<()> {
        for m in &owned {
            write_frame(&mut sender, m)?;
        }
        // Dropping the stream closes it: the reader sees EOF between frames.
        Ok(())
    });
    let mut reader = wrap(receiver);
    let mut got = Vec::new();
    while let Some(frame) = read_frame(&mut reader)? {
        got.push(frame);
    }
    writer
        .join()
        .map_err(|_| io::Error::other("writer thread panicked"))??;
    Ok(got)
}

/// The seeds' header, `struct.pack("i", n)`: Python's native byte order and
/// size, a signed C `int`, which is 4 little-endian bytes on x86-64 and
/// AArch64 Linux. `to_ne_bytes` of an `i32` is the same thing in Rust.
pub fn python_native_header(n: i32) -> [u8; 4] {
    n.to_ne_bytes()
}

fn show(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

/// Runs the lesson.
pub fn run() -> crate::Result {
    println!("TCP is a stream: where one write ends is not delivered.");

    let merged = two_writes_one_read(b"hello", b"world")?;
    println!(
        "sticky:  write(\"hello\"), write(\"world\"), then one read(1024) -> {} bytes {}",
        merged.len(),
        show(&merged)
    );

    let small = one_write_many_reads(b"abcdefghij", 4)?;
    println!("split:   one write of 10 bytes, read with a 4-byte buffer -> reads of {small:?}");

    let big = vec![7u8; 1 << 20];
    let sizes = one_write_many_reads(&big, 64 * 1024)?;
    println!(
        "split:   one write of 1 MiB, read with a 64 KiB buffer -> {} reads, from {} to {} bytes",
        sizes.len(),
        sizes.iter().min().unwrap_or(&0),
        sizes.iter().max().unwrap_or(&0)
    );

    let messages: [&[u8]; 4] = [b"hello", b"world", b"", b"a longer third message"];
    let frames = framed_round(&messages, OneByteAtATime)?;
    let shown: Vec<String> = frames.iter().map(|f| show(f)).collect();
    println!(
        "framed:  4 frames (4-byte big-endian length + payload) written back to back, read one byte per read() -> {}",
        shown.join(" ")
    );

    let native = python_native_header(5);
    let misread = u32::from_be_bytes(native);
    println!(
        "header:  struct.pack(\"i\", 5) here = {native:02x?}; network order (\"!I\", u32::to_be_bytes) = {:02x?}",
        5u32.to_be_bytes()
    );
    println!(
        "header:  a big-endian reader of the native header reads a length of {misread}, not 5"
    );
    Ok(())
}
