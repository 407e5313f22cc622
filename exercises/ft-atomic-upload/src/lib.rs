//! Exercise `ft-atomic-upload`: an upload appears under its name only when
//! it is complete and verified; a failed one leaves nothing behind, and
//! does not harm the file it would have replaced.
//!
//! Edit `src/starter.rs`; grade with `just exercise ft-atomic-upload`.
//! The `solution` feature builds `src/solution.rs` instead.
//!
//! This file is the rest of the server, not part of the exercise: a
//! blocking thread-per-connection server that speaks `file-transfer`'s
//! protocol for uploads only (length-prefixed JSON header, go-ahead, body,
//! final reply) and hands each body to [`store_upload`]. Syscalls:
//! `accept(2)`, `read(2)`, `write(2)` here; the file calls are the
//! exercise's.

#![warn(missing_docs)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use file_transfer::proto::{self, PREFIX, Reply, Request};

#[cfg(not(feature = "solution"))]
#[path = "starter.rs"]
mod imp;
#[cfg(feature = "solution")]
#[path = "solution.rs"]
mod imp;

pub use imp::store_upload;

/// A running server: its address, and how many connections it has
/// finished with (the grade waits on that instead of guessing).
pub struct Server {
    /// Where it listens, on 127.0.0.1.
    pub addr: SocketAddr,
    handled: Arc<AtomicUsize>,
}

impl Server {
    /// Connections finished so far, whatever their outcome.
    pub fn handled(&self) -> usize {
        self.handled.load(Ordering::SeqCst)
    }
}

/// Starts a server on `127.0.0.1:0` storing into `dir`. Its threads live
/// as long as the process.
pub fn start(dir: PathBuf) -> io::Result<Server> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&handled);
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let dir = dir.clone();
            let counter = Arc::clone(&counter);
            thread::spawn(move || {
                let _ = handle(stream, &dir);
                counter.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    Ok(Server { addr, handled })
}

fn reply(stream: &mut TcpStream, r: &Reply) -> io::Result<()> {
    stream.write_all(&proto::encode(r))
}

/// One connection: header, go-ahead, body through [`store_upload`], verdict.
fn handle(mut stream: TcpStream, dir: &Path) -> io::Result<()> {
    let mut prefix = [0u8; PREFIX];
    stream.read_exact(&mut prefix)?;
    let len = match proto::header_len(prefix) {
        Ok(len) => len,
        Err(e) => return reply(&mut stream, &Reply::error(e)),
    };
    let mut json = vec![0u8; len];
    stream.read_exact(&mut json)?;
    let (name, size, sha256) = match proto::parse_request(&json) {
        Ok(Request::Upload { name, size, sha256 }) => (name, size, sha256),
        Ok(_) => return reply(&mut stream, &Reply::error("this server only takes uploads")),
        Err(e) => return reply(&mut stream, &Reply::error(e)),
    };
    let checked = proto::check_name(&name).and_then(|()| proto::parse_sha256(&sha256));
    let expected = match checked {
        Ok(d) => d,
        Err(e) => return reply(&mut stream, &Reply::error(e)),
    };
    reply(&mut stream, &Reply::ok())?;
    let mut body = (&stream).take(size);
    match store_upload(dir, &name, size, &expected, &mut body) {
        Ok(()) => reply(
            &mut stream,
            &Reply {
                size: Some(size),
                sha256: Some(sha256.to_lowercase()),
                ..Reply::ok()
            },
        ),
        Err(e) => reply(&mut stream, &Reply::error(e)),
    }
}
