//! Talking between processes: a duplex socketpair, a queue on a pipe, and a
//! manager process that owns shared state.
//!
//! Seed topic: `multiprocessing.Pipe()` ("send N times, receive N times: send
//! more and the extra is never read, send fewer and the other side waits"),
//! `multiprocessing.Queue` between processes, and `Manager()`, "a server
//! process that holds the objects; the others reach them through proxies, and
//! it does the locking for you".
//!
//! Syscalls and APIs: `socketpair(2)` (`UnixStream::pair`), `pipe(2)`,
//! `fork(2)`, `bind(2)`/`listen(2)`/`accept(2)`/`connect(2)` on a Unix
//! socket (`std::os::unix::net`), `poll(2)`, `SO_RCVTIMEO`
//! (`set_read_timeout`), `waitpid(2)`.
//!
//! Trade-offs: a stream (pipe, socketpair) has no message boundaries, so each
//! message carries a length prefix and each side must read exactly what the
//! other wrote. On a pipe with several writers, each writer's records stay
//! in order whatever their size (a pipe is a FIFO); what keeps records of
//! *different* writers from interleaving is that each is one `write` of at
//! most `PIPE_BUF` bytes, which POSIX makes atomic. A manager serialises
//! every operation through one process: always correct, and one round trip
//! per operation.
//!
//! Every child here is allocation-free (stack buffers, a map whose capacity
//! the parent reserved before `fork`) and every read has a timeout.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::wait::WaitStatus;
use nix::unistd::{Pid, getpid};

use crate::spawn_join::{
    StackBuf, fork_child, read_exact_timeout, wait_child, wait_readable, write_all_fd,
};

// ---------------------------------------------------------------------------
// (a) A duplex socketpair and the "send N times, receive N times" rule.
// ---------------------------------------------------------------------------

/// What the parent saw on its end of the socketpair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplexObservation {
    /// The messages the parent received, in order.
    pub received: Vec<String>,
    /// A receive beyond what the child sent did not return a message: it
    /// waited until its timeout.
    pub extra_recv_timed_out: bool,
    /// The child received the parent's one message intact (its exit code 0).
    pub child_got_reply: bool,
}

/// The child's two messages, as in the seeds.
pub const CHILD_MESSAGES: [&str; 2] = ["hello from child", "hello from child 2"];
/// The parent's one message.
pub const PARENT_MESSAGE: &str = "hello from parent";

/// Writes one message: a 4-byte little-endian length, then the bytes.
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(payload)
}

/// Reads one message written by [`write_frame`] into `buf`.
pub fn read_frame<'a>(r: &mut impl Read, buf: &'a mut [u8]) -> io::Result<&'a [u8]> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > buf.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    r.read_exact(&mut buf[..len])?;
    Ok(&buf[..len])
}

/// Child sends two messages, parent sends one; the parent then tries a third
/// receive, which can only time out.
pub fn duplex(extra_wait: Duration) -> crate::Result<DuplexObservation> {
    let (mut parent_end, mut child_end) = UnixStream::pair()?;
    let child = fork_child(|| {
        // The child must close its copy of the parent's end, or the parent
        // hanging up would never reach it as end-of-file.
        // SAFETY: the child never touches `parent_end` again and leaves with
        // `_exit`, so the `OwnedFd` inside is never dropped or closed twice.
        unsafe { libc::close(parent_end.as_raw_fd()) };
        if child_end
            .set_read_timeout(Some(Duration::from_secs(5)))
            .is_err()
        {
            return 2;
        }
        for m in CHILD_MESSAGES {
            if write_frame(&mut child_end, m.as_bytes()).is_err() {
                return 3;
            }
        }
        let mut buf = [0u8; 64];
        let ok =
            matches!(read_frame(&mut child_end, &mut buf), Ok(m) if m == PARENT_MESSAGE.as_bytes());
        // Stay connected until the parent hangs up, so that its extra receive
        // really waits instead of seeing end-of-file.
        let mut byte = [0u8; 1];
        let _ = child_end.read(&mut byte);
        if ok { 0 } else { 4 }
    })?;
    drop(child_end);

    let result = (|| -> crate::Result<(Vec<String>, bool)> {
        parent_end.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = [0u8; 64];
        let mut received = Vec::new();
        for _ in CHILD_MESSAGES {
            let m = read_frame(&mut parent_end, &mut buf)?;
            received.push(String::from_utf8_lossy(m).into_owned());
        }
        write_frame(&mut parent_end, PARENT_MESSAGE.as_bytes())?;
        parent_end.set_read_timeout(Some(extra_wait))?;
        let extra = read_frame(&mut parent_end, &mut buf);
        let timed_out = matches!(&extra, Err(e)
            if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut));
        Ok((received, timed_out))
    })();
    drop(parent_end);
    let status = wait_child(child, Duration::from_secs(5))?;
    let (received, extra_recv_timed_out) = result?;
    Ok(DuplexObservation {
        received,
        extra_recv_timed_out,
        child_got_reply: status == WaitStatus::Exited(child, 0),
    })
}

// ---------------------------------------------------------------------------
// (b) A queue between processes: several producers, one pipe, one consumer.
// ---------------------------------------------------------------------------

/// One record taken off the pipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Which producer wrote it.
    pub producer: u32,
    /// Its sequence number within that producer.
    pub seq: u32,
    /// The text, e.g. `producer 1 made item 2`.
    pub text: String,
}

/// Forks `producers` children that each put `items` length-prefixed records
/// on one pipe; the parent takes exactly `producers * items` records off it.
pub fn pipe_queue(producers: u32, items: u32) -> crate::Result<Vec<Record>> {
    let (r, w) = nix::unistd::pipe()?;
    let mut children = Vec::new();
    for p in 0..producers {
        let spawned = fork_child(|| {
            for i in 0..items {
                let mut text = StackBuf::<48>::new();
                if write!(text, "producer {p} made item {i}").is_err() {
                    return 2;
                }
                // header: length, producer, seq; then the text. One write()
                // of at most PIPE_BUF bytes is atomic: records never mix.
                let body = text.as_bytes();
                let mut rec = [0u8; 12 + 48];
                rec[..4].copy_from_slice(&(body.len() as u32).to_le_bytes());
                rec[4..8].copy_from_slice(&p.to_le_bytes());
                rec[8..12].copy_from_slice(&i.to_le_bytes());
                rec[12..12 + body.len()].copy_from_slice(body);
                if write_all_fd(w.as_fd(), &rec[..12 + body.len()]).is_err() {
                    return 3;
                }
            }
            0
        });
        match spawned {
            Ok(pid) => children.push(pid),
            Err(e) => {
                reap_all(&children);
                return Err(e);
            }
        }
    }
    drop(w);

    let result = (|| -> crate::Result<Vec<Record>> {
        let mut out = Vec::new();
        let limit = Duration::from_secs(5);
        for _ in 0..producers * items {
            let mut head = [0u8; 12];
            read_exact_timeout(r.as_fd(), &mut head, limit)?;
            let len = u32::from_le_bytes(head[..4].try_into()?) as usize;
            let mut text = vec![0u8; len];
            read_exact_timeout(r.as_fd(), &mut text, limit)?;
            out.push(Record {
                producer: u32::from_le_bytes(head[4..8].try_into()?),
                seq: u32::from_le_bytes(head[8..12].try_into()?),
                text: String::from_utf8(text)?,
            });
        }
        Ok(out)
    })();
    let exits = reap_all(&children);
    let records = result?;
    if exits.iter().any(|ok| !ok) {
        return Err("a producer failed".into());
    }
    Ok(records)
}

/// Waits for every child; returns whether each exited with code 0.
fn reap_all(children: &[Pid]) -> Vec<bool> {
    children
        .iter()
        .map(|&pid| {
            matches!(
                wait_child(pid, Duration::from_secs(5)),
                Ok(WaitStatus::Exited(_, 0))
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// (c) A manager process that owns a map, reached over a Unix socket.
// ---------------------------------------------------------------------------

/// What the manager run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerObservation {
    /// The final value of the counter, read with `GET`.
    pub final_count: i64,
    /// Every value an `INCR` returned, with the client that got it.
    pub replies: Vec<(u32, i64)>,
    /// The reply to `SET` then `GET` of another key.
    pub set_get: String,
}

/// The longest key the manager accepts (its map stores fixed-size keys).
const KEY_LEN: usize = 16;
/// How many keys the manager's map holds: reserved before `fork`, so the
/// manager child never allocates.
const MAP_CAPACITY: usize = 64;

/// Starts a manager process, lets `clients` processes each send `per_client`
/// `INCR hits` requests at the same time, then reads the count back.
pub fn manager(clients: u32, per_client: u32) -> crate::Result<ManagerObservation> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let path: PathBuf = std::env::temp_dir().join(format!(
        "lessons-ipc-{}-{}.sock",
        getpid(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&path);
    // Bound before forking: clients can connect as soon as they start.
    let listener = UnixListener::bind(&path)?;
    let addr = SocketAddr::from_pathname(&path)?;
    let mut map: HashMap<[u8; KEY_LEN], i64> = HashMap::with_capacity(MAP_CAPACITY);

    let server = fork_child(move || serve_manager(&listener, &mut map));
    let result = drive_manager(&addr, clients, per_client);
    let status = wait_child(server?, Duration::from_secs(10));
    let _ = std::fs::remove_file(&path);
    let obs = result?;
    match status? {
        WaitStatus::Exited(_, 0) => Ok(obs),
        other => Err(format!("the manager ended with {other:?}").into()),
    }
}

fn drive_manager(
    addr: &SocketAddr,
    clients: u32,
    per_client: u32,
) -> crate::Result<ManagerObservation> {
    let (r, w) = nix::unistd::pipe()?;
    let mut pids = Vec::new();
    for c in 0..clients {
        let spawned = fork_child(|| {
            for _ in 0..per_client {
                // One connection per request, so that the clients' requests
                // interleave at the manager, not just their connections.
                let Ok(value) = request(addr, b"INCR hits\n") else {
                    return 2;
                };
                let Some(value) = parse_i64(value.as_bytes()) else {
                    return 3;
                };
                let mut rec = [0u8; 12];
                rec[..4].copy_from_slice(&c.to_le_bytes());
                rec[4..].copy_from_slice(&value.to_le_bytes());
                if write_all_fd(w.as_fd(), &rec).is_err() {
                    return 4;
                }
            }
            0
        });
        match spawned {
            Ok(pid) => pids.push(pid),
            Err(e) => {
                reap_all(&pids);
                let _ = request(addr, b"QUIT\n");
                return Err(e);
            }
        }
    }
    drop(w);

    let mut replies = Vec::new();
    let mut failure = None;
    for _ in 0..clients * per_client {
        let mut rec = [0u8; 12];
        if let Err(e) = read_exact_timeout(r.as_fd(), &mut rec, Duration::from_secs(5)) {
            failure = Some(e);
            break;
        }
        let client = u32::from_le_bytes(rec[..4].try_into()?);
        replies.push((client, i64::from_le_bytes(rec[4..].try_into()?)));
    }
    let clients_ok = reap_all(&pids).iter().all(|ok| *ok);

    let final_count = request(addr, b"GET hits\n").map(|v| parse_i64(v.as_bytes()));
    let set = request(addr, b"SET limit 7\n");
    let set_get = request(addr, b"GET limit\n");
    let bye = request(addr, b"QUIT\n");
    if let Some(e) = failure {
        return Err(e.into());
    }
    if !clients_ok {
        return Err("a client process failed".into());
    }
    bye?;
    set?;
    Ok(ManagerObservation {
        final_count: final_count?.ok_or("GET hits did not return a number")?,
        replies,
        set_get: String::from_utf8_lossy(set_get?.as_bytes()).into_owned(),
    })
}

/// Sends one request line and reads one reply line (without the newline).
/// Allocation-free, so client children use it too.
fn request(addr: &SocketAddr, line: &[u8]) -> io::Result<StackBuf<32>> {
    let mut s = UnixStream::connect_addr(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(line)?;
    let mut reply = StackBuf::<32>::new();
    let mut byte = [0u8; 1];
    loop {
        if s.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if byte[0] == b'\n' {
            return Ok(reply);
        }
        let ch = [byte[0]];
        let text = std::str::from_utf8(&ch).map_err(|_| io::ErrorKind::InvalidData)?;
        reply
            .write_str(text)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    }
}

fn parse_i64(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// The manager's loop: accept a connection, answer its lines, repeat, until
/// `QUIT` or ten idle seconds. Returns the child's exit code.
fn serve_manager(listener: &UnixListener, map: &mut HashMap<[u8; KEY_LEN], i64>) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if wait_readable(listener.as_fd(), left).is_err() {
            return 5;
        }
        let Ok((mut conn, _)) = listener.accept() else {
            continue;
        };
        if conn.set_read_timeout(Some(Duration::from_secs(2))).is_err() {
            continue;
        }
        if serve_connection(&mut conn, map) {
            return 0;
        }
    }
}

/// Answers every line on one connection; returns true after `QUIT`.
fn serve_connection(conn: &mut UnixStream, map: &mut HashMap<[u8; KEY_LEN], i64>) -> bool {
    let mut buf = [0u8; 256];
    let mut len = 0;
    loop {
        while let Some(nl) = buf[..len].iter().position(|&b| b == b'\n') {
            let mut reply = StackBuf::<40>::new();
            let quit = apply(&buf[..nl], map, &mut reply);
            let _ = reply.write_str("\n");
            if conn.write_all(reply.as_bytes()).is_err() || quit {
                return quit;
            }
            buf.copy_within(nl + 1..len, 0);
            len -= nl + 1;
        }
        if len == buf.len() {
            let _ = conn.write_all(b"ERR line too long\n");
            return false;
        }
        match conn.read(&mut buf[len..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => len += n,
        }
    }
}

/// Applies one command to the map. The manager is one process handling one
/// request at a time: that, and nothing else, is what makes `INCR` atomic.
fn apply(line: &[u8], map: &mut HashMap<[u8; KEY_LEN], i64>, out: &mut StackBuf<40>) -> bool {
    let text = std::str::from_utf8(line).unwrap_or("");
    let mut words = text.split_ascii_whitespace();
    let (cmd, key, arg) = (words.next(), words.next(), words.next());
    let key = key.and_then(|k| {
        let mut fixed = [0u8; KEY_LEN];
        (k.len() <= KEY_LEN).then(|| {
            fixed[..k.len()].copy_from_slice(k.as_bytes());
            fixed
        })
    });
    // A new key needs a free slot: the map must never grow in the child.
    let has_room = |map: &HashMap<_, _>, k| map.contains_key(k) || map.len() < MAP_CAPACITY;
    let _ = match (cmd, key, arg) {
        (Some("GET"), Some(k), None) => match map.get(&k) {
            Some(v) => write!(out, "{v}"),
            None => write!(out, "nil"),
        },
        (Some("SET"), Some(k), Some(v)) if has_room(map, &k) => match v.parse::<i64>() {
            Ok(v) => {
                map.insert(k, v);
                write!(out, "OK")
            }
            Err(_) => write!(out, "ERR value must be an integer"),
        },
        (Some("INCR"), Some(k), None) if has_room(map, &k) => {
            let v = map.entry(k).or_insert(0);
            *v += 1;
            write!(out, "{v}")
        }
        (Some("QUIT"), None, None) => {
            let _ = write!(out, "BYE");
            return true;
        }
        _ => write!(out, "ERR"),
    };
    false
}

/// Runs the lesson.
pub fn run() -> crate::Result {
    println!("(a) duplex socketpair, length-prefixed messages");
    let d = duplex(Duration::from_millis(300))?;
    for m in &d.received {
        println!("[parent] recv: {m:?}");
    }
    println!(
        "[child]  recv: {PARENT_MESSAGE:?} -> {}",
        if d.child_got_reply { "ok" } else { "MISSING" }
    );
    println!(
        "[parent] a third recv with nothing sent: {}",
        if d.extra_recv_timed_out {
            "waits (timed out after 300 ms)"
        } else {
            "returned?!"
        }
    );

    println!("(b) a queue on one pipe: 3 producer processes, 1 consumer");
    let records = pipe_queue(3, 3)?;
    for r in &records {
        println!("[consumer] got {:?}", r.text);
    }

    println!("(c) a manager process owning a map; 4 client processes x 25 INCR");
    let m = manager(4, 25)?;
    let first: Vec<String> = m
        .replies
        .iter()
        .take(8)
        .map(|(c, v)| format!("c{c}:{v}"))
        .collect();
    println!(
        "[parent] first replies (client:value): {} ...",
        first.join(" ")
    );
    println!(
        "[parent] GET hits -> {} (expected {})",
        m.final_count,
        4 * 25
    );
    println!("[parent] SET limit 7; GET limit -> {}", m.set_get);
    Ok(())
}
