//! The server: one thread, one mio loop, a state machine per connection.
//!
//! Run with `cargo run -p file-transfer --bin ft-server -- --dir /tmp/ft`,
//! then `cargo run -p file-transfer --bin ft-client -- upload FILE`.
//!
//! # Syscalls
//!
//! The loop is `echo-mio`'s: `epoll_wait(2)` through `Poll::poll`, every
//! socket registered once, edge-triggered, for reading and writing;
//! `accept4(2)`, `read(2)`, `write(2)` on non-blocking sockets. Files are
//! ordinary blocking `open(2)` (`O_CREAT|O_EXCL` for an upload's temporary
//! file, `O_NOFOLLOW` for a download), `read(2)`, `write(2)`, `fsync(2)`,
//! `rename(2)`, `unlink(2)`.
//!
//! # Trade-offs
//!
//! File I/O is synchronous, inside the loop. That is acceptable here
//! because the files are regular files on a local disk: a `read` or `write`
//! of 64 KiB is served from the page cache (or queued to it) in
//! microseconds and never waits for a peer, and readiness APIs cannot help
//! anyway (`epoll` refuses regular files; they are "always ready"). The
//! one call that waits for the device is the `fsync` before each publish,
//! which stalls every transfer for as long as the disk takes. Where that
//! or the reads matter (a network file system, a slow or busy disk, many
//! large uploads) the file work belongs on a thread pool or io_uring, as
//! tokio's `fs` module and nginx's `aio threads` do.
//!
//! Each turn of a connection does at most [`STEPS_PER_TURN`] reads,
//! writes or hash chunks, then the next connection goes: a fast client
//! uploading at loopback speed cannot starve the others. A connection
//! stopped by that bound still has work no event will announce, so it goes
//! on the `ready` list, and the next `poll` does not sleep.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Seek, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use echo_protocol::nonblocking::{Accepted, Spare, accept_one};
use echo_protocol::{ACCEPT_BACKOFF, Config};
use mio::event::Event;
use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use sha2::{Digest, Sha256};

use crate::proto::{
    self, DEFAULT_MAX_FILE_SIZE, MAX_HEADER, PREFIX, Reply, Request, check_name, to_hex,
};

/// Most transfers in progress at once; a connection beyond it gets the
/// error `server busy` and is closed. `--max-conns` can lower it.
pub const MAX_TRANSFERS: usize = 256;

/// Bytes moved per read, write or hash step.
pub const CHUNK: usize = 64 * 1024;

/// Most steps (each one chunk) a connection takes per turn of the loop.
pub const STEPS_PER_TURN: usize = 8;

/// A connection that moves no byte for this long is closed (an upload in
/// progress is abandoned, its temporary file removed), so that a client
/// that connects and goes silent does not hold a transfer slot forever.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// After the last reply, how long the server keeps reading (and
/// discarding) what the client still sends before it closes. Closing with
/// unread input makes the kernel send RST, which can destroy the reply
/// before the client has read it; draining first lets the reply arrive.
pub const LINGER: Duration = Duration::from_secs(2);

/// After SIGINT/SIGTERM, how long transfers in progress may go on. Then
/// they are dropped, which removes their temporary files: this must stay
/// under [`echo_protocol::GRACE_PERIOD`], after which the process exits
/// without running destructors.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Prefix of an upload's temporary file. Published names cannot start
/// with `.` ([`check_name`]), so a temporary file never collides with one.
pub const TEMP_PREFIX: &str = ".upload-";

const ACCEPT_BATCH: usize = 64;
const MAX_EVENTS: usize = 256;
const LISTENER: Token = Token(usize::MAX);
const SHUTDOWN: Token = Token(usize::MAX - 1);

// `ft-server`'s own flags, next to the common `--addr`, `--max-conns`,
// `--verbose`. clap shows the doc comment as the program's description.
/// A file-transfer server: upload, download and list over TCP, SHA-256
/// checked end to end.
#[derive(Debug, Clone, clap::Args)]
pub struct Flags {
    /// The storage folder: every file is stored directly in it. Created if missing.
    #[arg(long, value_name = "DIR", value_parser = storage_dir)]
    pub dir: PathBuf,
    /// Largest upload accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_FILE_SIZE)]
    pub max_file_size: u64,
}

/// `--dir`, created if missing and made absolute. Checked while the
/// arguments are parsed, so that a folder that cannot be used is a bad
/// argument (status 2) reported before the readiness line, not a failure
/// after it.
fn storage_dir(arg: &str) -> Result<PathBuf, String> {
    fs::create_dir_all(arg)
        .and_then(|()| fs::canonicalize(arg))
        .map_err(|e| format!("cannot use it as the storage folder: {e}"))
}

// ANCHOR: temp-file
/// An upload's temporary file, removed when dropped unless published.
/// Dropping is what happens to it on every path but success (the client
/// vanished, the digest did not match, the server is shutting down), so
/// no path can forget it.
struct TempFile {
    path: PathBuf,
    file: File,
    published: bool,
}

impl TempFile {
    /// `O_CREAT|O_EXCL`: a stale file of the same name is an error rather
    /// than something to write over.
    fn create(dir: &Path, serial: u64) -> io::Result<TempFile> {
        let path = dir.join(format!("{TEMP_PREFIX}{}-{serial}", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(TempFile {
            path,
            file,
            published: false,
        })
    }

    /// Flushes the data to the disk, then renames it over `target`.
    /// `rename(2)` replaces atomically: a reader opens either the old file
    /// or the new one, never a mixture, and one that already has the old
    /// one open keeps reading it. Without the `fsync` a crash could leave
    /// the rename on disk but not the data: an empty file, published.
    fn publish(mut self, target: &Path) -> io::Result<()> {
        self.file.sync_all()?;
        fs::rename(&self.path, target)?;
        self.published = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_file(&self.path);
        }
    }
}
// ANCHOR_END: temp-file

/// An upload's body coming in.
struct Upload {
    name: String,
    temp: TempFile,
    remaining: u64,
    size: u64,
    hasher: Sha256,
    expected: [u8; 32],
}

/// A download's file being hashed before its header can be sent.
struct Hashing {
    file: File,
    size: u64,
    done: u64,
    hasher: Sha256,
}

// ANCHOR: state
/// Where a connection is. One request per connection, like HTTP/1.0: the
/// loop never has to find where one request's body ends and the next
/// begins, and a failed transfer cannot leave the next one out of step.
enum State {
    /// Reading the 4-byte prefix and the JSON header.
    Header,
    /// Upload: the go-ahead is queued or sent; the body is arriving.
    Receiving(Box<Upload>),
    /// Download: hashing the file, a chunk per step.
    Hashing(Box<Hashing>),
    /// Sending the queued reply (and a file body), then shutting down our
    /// direction.
    Replying,
    /// Reply sent and our direction shut: reading and discarding until
    /// the client closes, or [`LINGER`] runs out.
    Draining,
}
// ANCHOR_END: state

/// What a turn ended on.
enum Turn {
    /// Waiting for an event: every direction it needs answered `WouldBlock`.
    Blocked,
    /// Stopped by [`STEPS_PER_TURN`] with work left: drive again soon.
    Budget,
    /// Done: close it.
    Finished,
}

/// What a step did.
enum Step {
    Progress,
    /// Needs readiness it has not got.
    Idle,
    Finished,
}

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    state: State,
    /// The header as it arrives (at most `PREFIX + MAX_HEADER` bytes).
    header: Vec<u8>,
    /// Bytes queued to send, and how many of them are sent.
    out: Vec<u8>,
    sent: usize,
    /// A file body to send once `out` is empty, and the bytes left of it.
    body: Option<(File, u64)>,
    /// The socket may have input (or EOF) we have not read, or room for
    /// output: set by an event, cleared only by `WouldBlock`. Edge
    /// triggering tells us of a change once; these keep the level.
    can_read: bool,
    can_write: bool,
    queued: bool,
    deadline: Instant,
}

/// What the connections need from the server.
struct Store {
    dir: PathBuf,
    max_file_size: u64,
    serial: u64,
}

impl Conn {
    fn new(stream: TcpStream, peer: SocketAddr) -> Conn {
        Conn {
            stream,
            peer,
            state: State::Header,
            header: Vec::with_capacity(256),
            out: Vec::new(),
            sent: 0,
            body: None,
            // EPOLL_CTL_ADD reports the current state, so an event comes
            // for anything already there.
            can_read: false,
            can_write: false,
            queued: false,
            deadline: Instant::now() + IDLE_TIMEOUT,
        }
    }

    fn on_event(&mut self, event: &Event) {
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.can_read = true;
        }
        if event.is_writable() || event.is_write_closed() || event.is_error() {
            self.can_write = true;
        }
    }

    fn queue(&mut self, reply: &Reply) {
        self.out.extend_from_slice(&proto::encode(reply));
    }

    /// Answers with one error and closes after it. The upload in progress,
    /// if any, is dropped here, and with it its temporary file.
    fn fail(&mut self, msg: String, config: &Config) {
        config.log(format_args!("{}: {msg}", self.peer));
        self.queue(&Reply::error(msg));
        self.state = State::Replying;
    }

    // ANCHOR: drive
    /// Runs the state machine until it must wait, is finished, or has used
    /// its turn. An `Err` is a socket or file failure with nobody to tell:
    /// the caller closes the connection.
    fn drive(
        &mut self,
        store: &mut Store,
        scratch: &mut [u8],
        config: &Config,
    ) -> io::Result<Turn> {
        for _ in 0..STEPS_PER_TURN {
            let mut moved = false;
            if self.can_write && self.has_output() {
                moved |= self.write_some(scratch)?;
            }
            match self.step(store, scratch, config)? {
                Step::Progress => moved = true,
                Step::Idle => {}
                Step::Finished => return Ok(Turn::Finished),
            }
            if !moved {
                return Ok(Turn::Blocked);
            }
            if !matches!(self.state, State::Draining) {
                self.deadline = Instant::now() + IDLE_TIMEOUT;
            }
        }
        Ok(Turn::Budget)
    }
    // ANCHOR_END: drive

    fn has_output(&self) -> bool {
        self.sent < self.out.len() || self.body.as_ref().is_some_and(|(_, left)| *left > 0)
    }

    /// One `write`, refilling `out` from the body file first when it is
    /// empty. Returns whether bytes moved.
    fn write_some(&mut self, scratch: &mut [u8]) -> io::Result<bool> {
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
            if let Some((file, left)) = &mut self.body {
                let want = (*left).min(scratch.len() as u64) as usize;
                let n = file.read(&mut scratch[..want])?;
                if n == 0 {
                    // We hold the file open, and publishing replaces by
                    // rename, so only someone truncating it by hand gets here.
                    return Err(io::Error::other("file shrank while being sent"));
                }
                *left -= n as u64;
                self.out.extend_from_slice(&scratch[..n]);
            }
        }
        match self.stream.write(&self.out[self.sent..]) {
            Ok(n) => {
                self.sent += n;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                self.can_write = false;
                Ok(false)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// One read into `buf`: `Ok(None)` when it would block.
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.stream.read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                self.can_read = false;
                Ok(None)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(Some(usize::MAX)),
            Err(e) => Err(e),
        }
    }

    fn step(&mut self, store: &mut Store, scratch: &mut [u8], config: &Config) -> io::Result<Step> {
        match &mut self.state {
            State::Header => self.read_header(store, config),
            State::Receiving(_) => self.receive(store, scratch, config),
            State::Hashing(h) => {
                let want = (h.size - h.done).min(scratch.len() as u64) as usize;
                let n = h.file.read(&mut scratch[..want])?;
                if n == 0 && want > 0 {
                    return Err(io::Error::other("file shrank while being hashed"));
                }
                h.hasher.update(&scratch[..n]);
                h.done += n as u64;
                if h.done == h.size {
                    let State::Hashing(mut h) = std::mem::replace(&mut self.state, State::Replying)
                    else {
                        unreachable!()
                    };
                    h.file.rewind()?;
                    let digest: [u8; 32] = h.hasher.finalize().into();
                    self.queue(&Reply {
                        size: Some(h.size),
                        sha256: Some(to_hex(&digest)),
                        ..Reply::ok()
                    });
                    self.body = Some((h.file, h.size));
                }
                Ok(Step::Progress)
            }
            State::Replying => {
                if self.has_output() {
                    return Ok(Step::Idle);
                }
                // Our FIN after the reply: the client's read returns 0
                // once it has everything.
                let _ = self.stream.shutdown(Shutdown::Write);
                self.state = State::Draining;
                self.deadline = Instant::now() + LINGER;
                Ok(Step::Progress)
            }
            State::Draining => {
                if !self.can_read {
                    return Ok(Step::Idle);
                }
                match self.read_some(scratch) {
                    Ok(Some(0)) => Ok(Step::Finished),
                    Ok(Some(_)) => Ok(Step::Progress),
                    Ok(None) => Ok(Step::Idle),
                    // A reset after our reply: nothing more to do anyway.
                    Err(_) => Ok(Step::Finished),
                }
            }
        }
    }

    // ANCHOR: read-header
    /// Reads exactly the bytes of the header, never past it: whatever
    /// follows is an upload's body and is read into the file instead.
    fn read_header(&mut self, store: &mut Store, config: &Config) -> io::Result<Step> {
        if !self.can_read {
            return Ok(Step::Idle);
        }
        let need = if self.header.len() < PREFIX {
            PREFIX
        } else {
            let prefix: [u8; PREFIX] = self.header[..PREFIX].try_into().expect("4 bytes");
            match proto::header_len(prefix) {
                Ok(len) => PREFIX + len,
                Err(e) => {
                    self.fail(e, config);
                    return Ok(Step::Progress);
                }
            }
        };
        let have = self.header.len();
        if have == need {
            let parsed = proto::parse_request(&self.header[PREFIX..]);
            match parsed.and_then(|r| self.start(r, store)) {
                Ok(()) => {}
                Err(e) => self.fail(e, config),
            }
            return Ok(Step::Progress);
        }
        let mut buf = [0u8; PREFIX + MAX_HEADER];
        match self.read_some(&mut buf[..need - have])? {
            None => Ok(Step::Idle),
            Some(0) if have == 0 => Ok(Step::Finished), // connected and left
            Some(0) => {
                self.fail("connection closed inside the header".into(), config);
                Ok(Step::Progress)
            }
            Some(usize::MAX) => Ok(Step::Progress), // EINTR
            Some(n) => {
                self.header.extend_from_slice(&buf[..n]);
                Ok(Step::Progress)
            }
        }
    }
    // ANCHOR_END: read-header

    /// Acts on a parsed request: the first reply, and the next state.
    fn start(&mut self, request: Request, store: &mut Store) -> Result<(), String> {
        match request {
            Request::Upload { name, size, sha256 } => {
                check_name(&name)?;
                if size > store.max_file_size {
                    return Err(format!(
                        "file too large: {size} bytes, the limit is {}",
                        store.max_file_size
                    ));
                }
                let expected = proto::parse_sha256(&sha256)?;
                store.serial += 1;
                let temp = TempFile::create(&store.dir, store.serial)
                    .map_err(|e| format!("cannot store {name}: {e}"))?;
                // The go-ahead: the client sends the body only after it,
                // so a refused upload costs one round trip, not the file
                // (HTTP's `Expect: 100-continue`).
                self.queue(&Reply::ok());
                self.state = State::Receiving(Box::new(Upload {
                    name,
                    temp,
                    remaining: size,
                    size,
                    hasher: Sha256::new(),
                    expected,
                }));
            }
            Request::Download { name } => {
                check_name(&name)?;
                let file = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(store.dir.join(&name))
                    .map_err(|e| match e.kind() {
                        ErrorKind::NotFound => format!("no such file: {name}"),
                        _ => format!("cannot open {name}: {e}"),
                    })?;
                let meta = file
                    .metadata()
                    .map_err(|e| format!("cannot open {name}: {e}"))?;
                if !meta.is_file() {
                    return Err(format!("no such file: {name}"));
                }
                self.state = State::Hashing(Box::new(Hashing {
                    file,
                    size: meta.len(),
                    done: 0,
                    hasher: Sha256::new(),
                }));
            }
            Request::List => {
                let listing = list(&store.dir).map_err(|e| format!("cannot list: {e}"))?;
                self.queue(&Reply {
                    size: Some(listing.len() as u64),
                    ..Reply::ok()
                });
                self.out.extend_from_slice(&listing);
                self.state = State::Replying;
            }
        }
        Ok(())
    }

    // ANCHOR: receive
    /// One read of an upload's body into its temporary file; publishes it
    /// once complete and verified.
    fn receive(
        &mut self,
        store: &mut Store,
        scratch: &mut [u8],
        config: &Config,
    ) -> io::Result<Step> {
        let State::Receiving(up) = &mut self.state else {
            unreachable!()
        };
        if up.remaining > 0 {
            if !self.can_read {
                return Ok(Step::Idle);
            }
            let want = up.remaining.min(scratch.len() as u64) as usize;
            let n = match self.stream.read(&mut scratch[..want]) {
                Ok(0) => {
                    // The client left mid-body. Returning the error drops
                    // the connection, and with it the temporary file.
                    return Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        format!(
                            "upload of {} interrupted, {} bytes short",
                            up.name, up.remaining
                        ),
                    ));
                }
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.can_read = false;
                    return Ok(Step::Idle);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(Step::Progress),
                Err(e) => return Err(e),
            };
            if let Err(e) = up.temp.file.write_all(&scratch[..n]) {
                // A full disk, say: the client is told, and the body it is
                // still sending is discarded while the reply drains.
                let msg = format!("cannot store {}: {e}", up.name);
                self.fail(msg, config);
                return Ok(Step::Progress);
            }
            up.hasher.update(&scratch[..n]);
            up.remaining -= n as u64;
            return Ok(Step::Progress);
        }
        let State::Receiving(up) = std::mem::replace(&mut self.state, State::Replying) else {
            unreachable!()
        };
        let got: [u8; 32] = up.hasher.finalize().into();
        if got != up.expected {
            // `up.temp` is dropped at the end of this block: nothing published.
            self.fail(
                format!(
                    "sha256 mismatch for {}: received {}, header said {}",
                    up.name,
                    to_hex(&got),
                    to_hex(&up.expected)
                ),
                config,
            );
            return Ok(Step::Progress);
        }
        match up.temp.publish(&store.dir.join(&up.name)) {
            Ok(()) => {
                config.log(format_args!(
                    "{}: stored {} ({} bytes)",
                    self.peer, up.name, up.size
                ));
                self.queue(&Reply {
                    size: Some(up.size),
                    sha256: Some(to_hex(&got)),
                    ..Reply::ok()
                });
            }
            Err(e) => self.fail(format!("cannot store {}: {e}", up.name), config),
        }
        Ok(Step::Progress)
    }
    // ANCHOR_END: receive
}

/// The listing body: `<size> <name>\n` for each published file, sorted.
/// Names that break the rule (temporary files, anything put there by
/// hand) are left out, so that everything listed can be downloaded.
fn list(dir: &Path) -> io::Result<Vec<u8>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // `file_type` does not follow symlinks, as the download's
        // `O_NOFOLLOW` does not.
        if check_name(&name).is_err() || !entry.file_type()?.is_file() {
            continue;
        }
        files.push((name, entry.metadata()?.len()));
    }
    files.sort();
    let mut out = Vec::new();
    for (name, size) in files {
        out.extend_from_slice(format!("{size} {name}\n").as_bytes());
    }
    Ok(out)
}

/// Removes temporary files left by a server that was killed mid-upload
/// (SIGKILL runs no destructor). Only names with [`TEMP_PREFIX`], which
/// no published file can have.
fn sweep(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The connections, keyed by descriptor (also the event token), and what
/// they share.
struct Server<'a> {
    conns: HashMap<RawFd, Conn>,
    ready: Vec<RawFd>,
    /// Closed this turn, kept open until it ends so that a descriptor
    /// number is not reused while a stale event or `ready` entry names it.
    closing: Vec<Conn>,
    store: Store,
    scratch: Vec<u8>,
    limit: usize,
    config: &'a Config,
}

impl Server<'_> {
    fn drive(&mut self, fd: RawFd) {
        let Some(conn) = self.conns.get_mut(&fd) else {
            return;
        };
        conn.queued = false;
        match conn.drive(&mut self.store, &mut self.scratch, self.config) {
            Ok(Turn::Blocked) => {}
            Ok(Turn::Budget) => {
                conn.queued = true;
                self.ready.push(fd);
            }
            Ok(Turn::Finished) => self.close(fd, None),
            Err(e) => self.close(fd, Some(e)),
        }
    }

    fn close(&mut self, fd: RawFd, err: Option<io::Error>) {
        if let Some(conn) = self.conns.remove(&fd) {
            match err {
                Some(e) => self.config.log(format_args!("{}: closed: {e}", conn.peer)),
                None => self.config.log(format_args!("{}: closed", conn.peer)),
            }
            self.closing.push(conn);
        }
    }

    fn admit(&mut self, registry: &Registry, stream: std::net::TcpStream, peer: SocketAddr) {
        if self.conns.len() >= self.limit {
            // Best effort, one non-blocking write: a fresh socket's send
            // buffer has room for 40 bytes, and a client that does not read
            // it learns the same from the close.
            let _ = stream.set_nonblocking(true);
            let _ = (&stream).write(&proto::encode(&Reply::error("server busy")));
            self.config.log(format_args!(
                "{peer}: refused, {} transfers open",
                self.limit
            ));
            return;
        }
        if let Err(e) = stream.set_nonblocking(true) {
            self.config.log(format_args!("{peer}: {e}"));
            return;
        }
        let mut stream = TcpStream::from_std(stream);
        let fd = stream.as_raw_fd();
        let interest = Interest::READABLE.add(Interest::WRITABLE);
        if let Err(e) = registry.register(&mut stream, Token(fd as usize), interest) {
            self.config
                .log(format_args!("{peer}: cannot register: {e}"));
            return;
        }
        self.config.log(format_args!("{peer}: connected"));
        self.conns.insert(fd, Conn::new(stream, peer));
    }

    /// Closes the connections whose deadline passed; returns the nearest
    /// deadline left. O(connections) per turn: fine for hundreds; a timer
    /// wheel or heap would be the next step for many thousands.
    fn expire(&mut self, now: Instant) -> Option<Instant> {
        let expired: Vec<RawFd> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(fd, _)| *fd)
            .collect();
        for fd in expired {
            self.close(fd, Some(io::Error::new(ErrorKind::TimedOut, "timed out")));
        }
        self.conns.values().map(|c| c.deadline).min()
    }
}

// ANCHOR: serve
/// Serves transfers from this one thread until shutdown is requested and
/// the transfers in progress have finished (or [`SHUTDOWN_GRACE`] passed).
pub fn serve(listener: TcpListener, config: &Config, flags: Flags) -> io::Result<()> {
    fs::create_dir_all(&flags.dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", flags.dir.display())))?;
    let dir = fs::canonicalize(&flags.dir)?;
    let swept = sweep(&dir)?;
    if swept > 0 {
        eprintln!("removed {swept} temporary files left by an earlier run");
    }
    listener.set_nonblocking(true)?;
    let mut poll = Poll::new()?;
    poll.registry().register(
        &mut SourceFd(&listener.as_raw_fd()),
        LISTENER,
        Interest::READABLE,
    )?;
    poll.registry().register(
        &mut SourceFd(&config.shutdown.fd().as_raw_fd()),
        SHUTDOWN,
        Interest::READABLE,
    )?;
    let mut listener = Some(listener);
    let mut spare = Spare::new()?;
    let mut server = Server {
        conns: HashMap::new(),
        ready: Vec::new(),
        closing: Vec::new(),
        store: Store {
            dir,
            max_file_size: flags.max_file_size,
            serial: 0,
        },
        scratch: vec![0; CHUNK],
        limit: config.max_conns.min(MAX_TRANSFERS),
        config,
    };
    let mut events = Events::with_capacity(MAX_EVENTS);
    let mut backlog = Backlog::Empty;
    let mut stop_at: Option<Instant> = None;

    loop {
        let now = Instant::now();
        if stop_at.is_some_and(|t| t <= now) {
            config.log(format_args!(
                "shutdown: dropping {} unfinished transfers",
                server.conns.len()
            ));
            // Dropping the connections removes their temporary files.
            return Ok(());
        }
        let next = server.expire(now);
        server.closing.clear();
        if listener.is_none() && server.conns.is_empty() {
            return Ok(());
        }
        let timeout = if !server.ready.is_empty() || backlog == Backlog::More {
            Some(Duration::ZERO)
        } else {
            let retry = (backlog == Backlog::Later).then(|| now + ACCEPT_BACKOFF);
            [next, stop_at, retry]
                .into_iter()
                .flatten()
                .min()
                .map(|t| t.saturating_duration_since(now))
        };
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in &events {
            match event.token() {
                LISTENER => backlog = Backlog::More,
                SHUTDOWN => {
                    if let Some(l) = listener.take() {
                        let _ = poll.registry().deregister(&mut SourceFd(&l.as_raw_fd()));
                        stop_at = Some(Instant::now() + SHUTDOWN_GRACE);
                        config.log(format_args!(
                            "shutdown requested: {} transfers open",
                            server.conns.len()
                        ));
                    }
                }
                Token(fd) => {
                    let fd = fd as RawFd;
                    if let Some(conn) = server.conns.get_mut(&fd) {
                        conn.on_event(event);
                        if !conn.queued {
                            server.drive(fd);
                        }
                    }
                }
            }
        }
        for fd in std::mem::take(&mut server.ready) {
            server.drive(fd);
        }
        backlog = match &listener {
            Some(l) if backlog != Backlog::Empty => {
                accept_batch(l, &mut spare, &mut server, poll.registry())
            }
            _ => Backlog::Empty,
        };
        server.closing.clear();
    }
}
// ANCHOR_END: serve

/// What is left in the listen backlog after [`accept_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backlog {
    /// Accepted until `WouldBlock`: the next connection brings an event.
    Empty,
    /// Stopped at [`ACCEPT_BATCH`]: accept again without sleeping.
    More,
    /// Out of descriptors or memory: retry after [`ACCEPT_BACKOFF`]; no
    /// event will come for connections already in the backlog.
    Later,
}

/// Accepts until the backlog is empty or [`ACCEPT_BATCH`] is reached.
fn accept_batch(
    listener: &TcpListener,
    spare: &mut Spare,
    server: &mut Server<'_>,
    registry: &Registry,
) -> Backlog {
    for _ in 0..ACCEPT_BATCH {
        match accept_one(listener, spare) {
            Accepted::Client(stream, peer) => server.admit(registry, stream, peer),
            Accepted::Empty => return Backlog::Empty,
            Accepted::Skipped(e) => server.config.log(format_args!("accept: {e}")),
            Accepted::Later(e) => {
                server.config.log(format_args!("accept: {e}"));
                return Backlog::Later;
            }
        }
    }
    Backlog::More
}
