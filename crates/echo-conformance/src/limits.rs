//! The limits of the server contract, checked against the running binary:
//! `--max-conns` turns extra clients away without hurting the others, and
//! SIGTERM stops new work while open connections finish. Two more for the
//! models that buffer by hand: back-pressure on a client that never reads,
//! and shedding connections when out of descriptors.
//!
//! The fault suite's `max-conns` is the check behind the first, run on its own
//! server; `sigterm-mid-transfer` uses the same probe.
//!
//! Both checks probe with a fresh connection that writes one byte and waits
//! for it: an echo means "served", EOF or `ECONNRESET` means "closed", a
//! timeout means "neither" (left in the listen backlog). Where the server
//! notices an event asynchronously (a client leaving, a signal), the probe is
//! retried until a deadline rather than preceded by a sleep.

use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::cases::{CaseResult, connect, is_timeout, round_trip};
use crate::{Failure, ServerProcess};

/// Pause between probes: long enough not to flood the server, short next to
/// the deadlines.
pub(crate) const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// What a one-byte probe connection saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    Refused,
    Closed,
    Served,
    Ignored,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Probe::Refused => "the connection was refused",
            Probe::Closed => "the connection was closed without an echo",
            Probe::Served => "the connection was served (its byte was echoed)",
            Probe::Ignored => "the connection was neither served nor closed",
        })
    }
}

/// Connects, writes one byte and waits up to `wait` for it.
pub(crate) fn probe(addr: SocketAddr, wait: Duration) -> Probe {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, wait) else {
        return Probe::Refused;
    };
    let _ = s.set_nodelay(true);
    if s.set_read_timeout(Some(wait)).is_err() || s.set_write_timeout(Some(wait)).is_err() {
        return Probe::Closed;
    }
    // A write can fail when the server already closed: that is an answer.
    if s.write_all(b"?").is_err() {
        return Probe::Closed;
    }
    let mut byte = [0u8; 1];
    loop {
        return match s.read(&mut byte) {
            Ok(0) => Probe::Closed,
            Ok(_) if byte[0] == b'?' => Probe::Served,
            Ok(_) => Probe::Closed,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => Probe::Ignored,
            Err(_) => Probe::Closed,
        };
    }
}

pub(crate) fn remaining(deadline: Instant, cap: Duration) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .min(cap)
        .max(Duration::from_millis(1))
}

fn spawn(bin: &Path, args: &[&str]) -> ServerProcess {
    ServerProcess::spawn(bin, args).unwrap_or_else(|e| panic!("{e}"))
}

/// With `args` + `--max-conns 3`: 3 clients connect and each echoes; a 4th
/// client is turned away (refused, or closed with no echo, within 3 s); the
/// 3 still echo; after one of them closes, a new client is served within
/// 3 s. Panics with what went wrong.
pub fn assert_max_conns_enforced(bin: &Path, args: &[&str]) {
    let name = format!("{} --max-conns 3", bin.display());
    let mut full = args.to_vec();
    full.extend(["--max-conns", "3"]);
    let server = spawn(bin, &full);
    if let Err(e) = max_conns_enforced(server.addr(), 3) {
        panic!("{name}: {}", e.detail());
    }
}

/// The check behind [`assert_max_conns_enforced`] and the `max-conns` fault,
/// against a server started with `--max-conns n`. Not serving the `n`
/// (iterative) is a shortfall; serving the `n+1`th, or hurting the `n`
/// while turning it away, is breakage.
pub(crate) fn max_conns_enforced(addr: SocketAddr, n: usize) -> CaseResult {
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let who = format!("client {i} of {n}");
        let mut c = connect(addr, &who)?;
        round_trip(&mut c, format!("{who}\n").as_bytes(), &who)?;
        clients.push(c);
    }

    let extra = probe(addr, Duration::from_secs(3));
    match extra {
        Probe::Refused | Probe::Closed => {}
        Probe::Served => {
            return Err(Failure::Broken(format!(
                "with --max-conns {n} and {n} clients connected, for client {}, {extra} \
                 (expected: refused, or closed without an echo)",
                n + 1
            )));
        }
        Probe::Ignored => {
            return Err(Failure::Short(format!(
                "with --max-conns {n} and {n} clients connected, for client {}, {extra} within \
                 3 s (expected: turned away, not left waiting)",
                n + 1
            )));
        }
    }

    for (i, c) in clients.iter_mut().enumerate() {
        let who = format!("client {i} of {n}, after client {} was turned away", n + 1);
        round_trip(c, format!("{who}\n").as_bytes(), &who).map_err(Failure::Broken)?;
    }

    drop(clients.remove(0));
    let left = Instant::now();
    let deadline = left + Duration::from_secs(3);
    loop {
        let attempt = probe(addr, remaining(deadline, Duration::from_secs(1)));
        if attempt == Probe::Served {
            break;
        }
        if Instant::now() >= deadline {
            return Err(Failure::Short(format!(
                "3 s after one of {n} clients closed, a new client is still not served \
                 (last attempt: {attempt})"
            )));
        }
        thread::sleep(RETRY_PAUSE);
    }
    Ok(format!(
        "client {} turned away ({extra}); a new one served {:.0} ms after one of {n} left",
        n + 1,
        left.elapsed().as_secs_f64() * 1e3
    ))
}

/// A connected client echoes; SIGTERM the server; within 2 s new connections
/// are refused or closed without echo; the open client still echoes, then
/// closes; the server exits with status 0 within 3 s of that.
pub fn assert_graceful_shutdown(bin: &Path, args: &[&str]) {
    let name = bin.display().to_string();
    let mut server = spawn(bin, args);
    let addr = server.addr();
    let mut open = connect(addr, "open client").unwrap_or_else(|e| panic!("{name}: {e}"));
    round_trip(
        &mut open,
        b"before SIGTERM\n",
        "open client, before SIGTERM",
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));

    server.sigterm().unwrap_or_else(|e| panic!("{name}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let attempt = probe(addr, remaining(deadline, Duration::from_millis(500)));
        if matches!(attempt, Probe::Refused | Probe::Closed) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: 2 s after SIGTERM, a new client still connects and {attempt} \
             (expected: refused, or closed without an echo)"
        );
        thread::sleep(RETRY_PAUSE);
    }

    round_trip(&mut open, b"after SIGTERM\n", "open client, after SIGTERM")
        .unwrap_or_else(|e| panic!("{name}: an open connection must be allowed to finish: {e}"));
    drop(open);
    match server.wait_timeout(Duration::from_secs(3)) {
        Some(status) => assert!(
            status.success(),
            "{name}: exited with {status} after SIGTERM (expected 0)"
        ),
        None => panic!("{name}: still running 3 s after its last client closed, after SIGTERM"),
    }
}

/// The byte at stream offset `i` of [`assert_back_pressure`]'s stream.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// Sends `msg` on a fresh connection, half-closes, reads to EOF.
fn echo_once(server: &ServerProcess, msg: &[u8]) -> Vec<u8> {
    let mut stream = server.client();
    stream.write_all(msg).expect("write");
    stream.shutdown(Shutdown::Write).expect("half-close");
    let mut echoed = Vec::new();
    stream.read_to_end(&mut echoed).expect("read to EOF");
    echoed
}

/// Back-pressure in a model that buffers output by hand (the readiness
/// models, through `echo_protocol::nonblocking::Echo`): `bin` started with
/// `args` stops reading a client that sends without reading once about
/// `cap` bytes are unsent (plus what the kernel's buffers hold), serves
/// another client meanwhile, and, once the client reads, echoes every byte
/// it took, in order. With edge-triggered readiness the last part is the
/// trap: the bytes left in the socket when the server stopped at the cap
/// announce themselves with no new event, so a server that waits for one
/// never finishes the echo (`read_to_end` then fails on its timeout).
pub fn assert_back_pressure(bin: &Path, args: &[&str], cap: usize) {
    const CHUNK: usize = 64 * 1024;
    let server = ServerProcess::spawn(bin, args).unwrap_or_else(|e| panic!("{e}"));
    let mut hog = server.client();
    // A write that makes no progress for this long means the server has
    // stopped reading from us.
    hog.set_write_timeout(Some(Duration::from_millis(500)))
        .expect("write timeout");
    // Four socket buffers (two per side) plus the server's own: loopback
    // autotuning keeps each under 8 MiB, so anything past this bound means
    // the server kept reading without bound.
    let bound = cap + CHUNK + 4 * 8 * 1024 * 1024;
    let mut sent = 0usize;
    let blocked = loop {
        let chunk: Vec<u8> = (sent..sent + CHUNK).map(pattern).collect();
        match hog.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break true;
            }
            Err(e) => panic!("{args:?}: write after {sent} bytes: {e}"),
        }
        if sent > bound {
            break false;
        }
    };
    assert!(
        blocked,
        "{args:?}: the server read {sent} bytes from a client that never reads"
    );
    // The stalled client does not stall the loop.
    assert_eq!(
        echo_once(&server, b"not delayed"),
        b"not delayed",
        "{args:?}"
    );
    // Everything sent comes back, in order, once the client reads.
    hog.shutdown(Shutdown::Write).expect("half-close");
    let mut echoed = Vec::with_capacity(sent);
    hog.read_to_end(&mut echoed)
        .unwrap_or_else(|e| panic!("{args:?}: reading the echo back: {e}"));
    assert_eq!(echoed.len(), sent, "{args:?}: echoed bytes");
    if let Some(i) = (0..sent).find(|&i| echoed[i] != pattern(i)) {
        panic!(
            "{args:?}: byte {i} differs: {} instead of {}",
            echoed[i],
            pattern(i)
        );
    }
    drop(hog);
    let status = server.terminate().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{args:?}: exit status {status}");
}

/// The spare-descriptor trick of a readiness model: `bin` started with
/// `args` and only 64 descriptors, facing 100 clients. The connections it
/// cannot take must not make its loop spin (under 30 % of a core over a
/// second), nor be left hanging in the backlog: every client is either
/// served or closed. Once they leave, a new client is served.
pub fn assert_sheds_when_out_of_descriptors(bin: &Path, args: &[&str]) {
    const LIMIT: u64 = 64;
    const CLIENTS: usize = 100;
    let mut cmd = Command::new(bin);
    cmd.args(["--addr", "127.0.0.1:0"]).args(args);
    crate::process::limit_nofile(&mut cmd, LIMIT);
    let server = ServerProcess::spawn_command(cmd).unwrap_or_else(|e| panic!("{e}"));
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| server.client()).collect();
    let cpu = || crate::tree::process_cpu_ns(server.pid()).expect("the server's CPU clock");
    let (before, since) = (cpu(), Instant::now());
    thread::sleep(Duration::from_secs(1));
    let share = cpu().saturating_sub(before) as f64 / since.elapsed().as_nanos() as f64;
    assert!(
        share < 0.3,
        "{args:?}: the server used {:.0} % of a core while out of descriptors",
        share * 100.0
    );

    let (mut served, mut refused) = (0, 0);
    for (i, client) in clients.iter_mut().enumerate() {
        // A refused client may see its write fail once the server's close
        // has arrived; its read tells the verdict either way.
        let _ = client.write_all(b"ping");
        let mut buf = [0u8; 4];
        match client.read_exact(&mut buf) {
            Ok(()) => {
                assert_eq!(&buf, b"ping", "{args:?}: client {i}");
                served += 1;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
                ) =>
            {
                refused += 1;
            }
            Err(e) => panic!("{args:?}: client {i} neither served nor closed: {e}"),
        }
    }
    assert_eq!(served + refused, CLIENTS);
    assert!(
        served > 0 && served < LIMIT as usize,
        "{args:?}: {served} served"
    );
    assert!(
        refused > 0,
        "{args:?}: no client was refused: was the limit applied?"
    );

    // Leave cleanly, then a fresh client must be served.
    for client in &mut clients {
        let _ = client.shutdown(Shutdown::Write);
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{args:?}: bytes after the echo: {rest:?}");
    }
    drop(clients);
    assert_eq!(echo_once(&server, b"fresh"), b"fresh", "{args:?}");
    let status = server.terminate().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{args:?}: exit status {status}");
}

/// Byte `i` of [`assert_streams_back`]'s stream: a period (251) prime to
/// every power of two, so that a chunk echoed out of place shows.
fn stream_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// Writes `total` bytes from a second thread, `write_size` per `write`,
/// while this one reads the echo, then checks every byte and the EOF after
/// them. Both directions run at once, so nothing waits on socket buffers;
/// a read that times out (the client's 5 s) means the server stopped
/// echoing: a socket left undrained by a server that waits for an edge.
/// With `close_early` the client half-closes as soon as it has written, so
/// the FIN may arrive with bytes the server reads in a later turn, and the
/// EOF must still come after the last of them; without, only once
/// everything is back, so that no FIN edge comes to rescue such a server.
pub fn assert_streams_back(
    server: &ServerProcess,
    total: usize,
    write_size: usize,
    close_early: bool,
) {
    let mut reader = server.client();
    let mut writer = reader.try_clone().expect("clone the client socket");
    let sender = thread::spawn(move || {
        let mut sent = 0;
        while sent < total {
            let n = write_size.min(total - sent);
            let chunk: Vec<u8> = (sent..sent + n).map(stream_byte).collect();
            writer.write_all(&chunk).expect("write");
            sent += n;
        }
        if close_early {
            writer.shutdown(Shutdown::Write).expect("half-close");
        }
    });
    let mut echoed = vec![0; total];
    let mut got = 0;
    while got < total {
        match reader.read(&mut echoed[got..]) {
            Ok(0) => panic!("EOF after {got} of {total} bytes back"),
            Ok(n) => got += n,
            Err(e) => panic!("after {got} of {total} bytes back: {e}"),
        }
    }
    sender.join().expect("the writing thread");
    if let Some(i) = (0..total).find(|&i| echoed[i] != stream_byte(i)) {
        panic!(
            "byte {i} differs: {} instead of {}",
            echoed[i],
            stream_byte(i)
        );
    }
    if !close_early {
        reader.shutdown(Shutdown::Write).expect("half-close");
    }
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).expect("read to EOF");
    assert!(rest.is_empty(), "{} bytes after the echo", rest.len());
}
