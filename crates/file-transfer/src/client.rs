//! The client: blocking sockets, one connection per request. A client
//! does one thing at a time, so a thread that waits is exactly what it
//! needs; the readiness loop is the server's business.
//!
//! Syscalls: `connect(2)`, `read(2)`, `write(2)` with `SO_RCVTIMEO` and
//! `SO_SNDTIMEO` set, so that no call waits forever on a server that
//! stopped answering; for files, `open(2)`, `read(2)`, `write(2)`,
//! `fsync(2)`, `rename(2)`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::proto::{self, PREFIX, Reply, Request};

/// Longest any one socket call may wait, and the connect timeout.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes per read and write of a body.
const CHUNK: usize = 64 * 1024;

/// A failure, as one line for the user.
pub type Error = String;

/// Connects with [`CLIENT_TIMEOUT`] on every call.
pub fn connect(addr: SocketAddr) -> Result<TcpStream, Error> {
    let stream = TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let setup = || -> io::Result<()> {
        stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
        stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
        // The request header goes in one write, the body in 64 KiB writes:
        // nothing is left for Nagle's algorithm to gather.
        stream.set_nodelay(true)
    };
    setup().map_err(|e| format!("{addr}: {e}"))?;
    Ok(stream)
}

/// Sends one request header.
pub fn send_request(stream: &mut TcpStream, request: &Request) -> Result<(), Error> {
    stream
        .write_all(&proto::encode(request))
        .map_err(|e| format!("sending the request: {e}"))
}

/// Reads one reply header; `Err` for a malformed one or a lost connection,
/// `Ok` with `ok: false` for the server's refusal.
pub fn read_reply(stream: &mut TcpStream) -> Result<Reply, Error> {
    let mut prefix = [0u8; PREFIX];
    stream
        .read_exact(&mut prefix)
        .map_err(|e| format!("reading the reply: {e}"))?;
    let len = proto::header_len(prefix).map_err(|e| format!("bad reply: {e}"))?;
    let mut json = vec![0u8; len];
    stream
        .read_exact(&mut json)
        .map_err(|e| format!("reading the reply: {e}"))?;
    serde_json::from_slice(&json).map_err(|e| format!("bad reply: {e}"))
}

/// A reply that must say `ok`; the server's error otherwise.
fn expect_ok(stream: &mut TcpStream) -> Result<Reply, Error> {
    let reply = read_reply(stream)?;
    if reply.ok {
        Ok(reply)
    } else {
        Err(reply
            .error
            .unwrap_or_else(|| "refused, no reason given".into()))
    }
}

/// SHA-256 and length of everything `reader` yields.
pub fn hash_reader(reader: &mut impl Read) -> io::Result<([u8; 32], u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok((hasher.finalize().into(), total)),
            Ok(n) => {
                hasher.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

// ANCHOR: upload
/// Uploads everything `source` yields under `name`: hashes it, sends the
/// header, waits for the go-ahead, sends the body, and returns the
/// server's final reply (size and digest stored).
pub fn upload<R: Read + Seek>(
    addr: SocketAddr,
    name: &str,
    source: &mut R,
) -> Result<Reply, Error> {
    // Hashing first costs a second read of the file; the alternative, a
    // digest sent after the body, would let the server verify only after
    // it had already written everything.
    let (digest, size) = hash_reader(source).map_err(|e| format!("reading the file: {e}"))?;
    source
        .rewind()
        .map_err(|e| format!("reading the file: {e}"))?;
    let mut stream = connect(addr)?;
    send_request(
        &mut stream,
        &Request::Upload {
            name: name.into(),
            size,
            sha256: proto::to_hex(&digest),
        },
    )?;
    expect_ok(&mut stream)?;
    let sent = io::copy(&mut source.take(size), &mut stream)
        .map_err(|e| format!("sending the body: {e}"))?;
    if sent != size {
        return Err(format!(
            "the file shrank while being sent ({sent} of {size} bytes)"
        ));
    }
    let reply = expect_ok(&mut stream)?;
    if reply.sha256.as_deref() != Some(&proto::to_hex(&digest)) {
        return Err("the server stored a different digest".into());
    }
    Ok(reply)
}
// ANCHOR_END: upload

// ANCHOR: download
/// Downloads `name` into `sink`, verifying the digest the server sent.
/// The bytes are in `sink` before they are verified: a caller that must
/// not keep unverified data writes to a temporary file, as
/// [`download_to`] does. Returns the reply (size and digest).
pub fn download(addr: SocketAddr, name: &str, sink: &mut impl Write) -> Result<Reply, Error> {
    let mut stream = connect(addr)?;
    send_request(&mut stream, &Request::Download { name: name.into() })?;
    let reply = expect_ok(&mut stream)?;
    let size = reply.size.ok_or("bad reply: no size")?;
    let expected = proto::parse_sha256(reply.sha256.as_deref().ok_or("bad reply: no sha256")?)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut left = size;
    while left > 0 {
        let want = left.min(CHUNK as u64) as usize;
        let n = match stream.read(&mut buf[..want]) {
            Ok(0) => return Err(format!("connection closed {left} bytes before the end")),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("receiving the body: {e}")),
        };
        hasher.update(&buf[..n]);
        sink.write_all(&buf[..n])
            .map_err(|e| format!("writing the file: {e}"))?;
        left -= n as u64;
    }
    let got: [u8; 32] = hasher.finalize().into();
    if got != expected {
        return Err(format!(
            "sha256 mismatch: received {}, server said {}",
            proto::to_hex(&got),
            proto::to_hex(&expected)
        ));
    }
    Ok(reply)
}
// ANCHOR_END: download

/// Downloads `name` to the file `out`, which appears only once complete
/// and verified: the same temporary-file-and-rename as the server's.
pub fn download_to(addr: SocketAddr, name: &str, out: &Path) -> Result<Reply, Error> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = out
        .file_name()
        .ok_or_else(|| format!("{}: not a file name", out.display()))?;
    let temp = dir.join(format!(
        ".{}.part-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .map_err(|e| format!("{}: {e}", temp.display()))?;
    let result = download(addr, name, &mut file).and_then(|reply| {
        file.sync_all()
            .and_then(|()| fs::rename(&temp, out))
            .map_err(|e| format!("{}: {e}", out.display()))?;
        Ok(reply)
    });
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Uploads the file at `path`.
pub fn upload_file(addr: SocketAddr, name: &str, path: &Path) -> Result<Reply, Error> {
    let mut file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    upload(addr, name, &mut file)
}

/// The published files and their sizes, sorted by name.
pub fn list(addr: SocketAddr) -> Result<Vec<(String, u64)>, Error> {
    let mut stream = connect(addr)?;
    send_request(&mut stream, &Request::List)?;
    let reply = expect_ok(&mut stream)?;
    let size = reply.size.ok_or("bad reply: no size")?;
    let mut body = Vec::new();
    (&mut stream)
        .take(size)
        .read_to_end(&mut body)
        .map_err(|e| format!("receiving the listing: {e}"))?;
    if body.len() as u64 != size {
        return Err("connection closed inside the listing".into());
    }
    let text = String::from_utf8(body).map_err(|_| "bad listing: not UTF-8".to_string())?;
    text.lines()
        .map(|line| {
            let (size, name) = line
                .split_once(' ')
                .ok_or_else(|| format!("bad listing line: {line:?}"))?;
            let size = size
                .parse()
                .map_err(|_| format!("bad listing line: {line:?}"))?;
            Ok((name.to_string(), size))
        })
        .collect()
}
