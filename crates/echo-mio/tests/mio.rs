//! Black-box tests of `echo-mio`: the shared conformance suite and fault
//! suite, the command line, `--max-conns`, shutdown, and the two things an
//! edge-triggered loop gets wrong most easily: resuming a client stopped at
//! `OUTPUT_CAP` once its output drains (no new event comes for the bytes
//! already waiting), and surviving `EMFILE` without spinning or stalling.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use echo_conformance::{ServerProcess, tree};
use echo_mio::{OUTPUT_CAP, READ_CHUNK};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_echo-mio"))
}

/// Sends `msg`, half-closes, and returns everything read until EOF.
fn echo_once(server: &ServerProcess, msg: &[u8]) -> Vec<u8> {
    let mut stream = server.client();
    stream.write_all(msg).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let mut echoed = Vec::new();
    stream.read_to_end(&mut echoed).unwrap();
    echoed
}

fn terminate(server: ServerProcess) {
    let status = server.terminate().expect("terminate");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn conforms() {
    echo_conformance::assert_conforms(bin(), &[]);
}

#[test]
fn survives_the_faults() {
    echo_conformance::assert_survives_faults(bin(), &[]);
}

#[test]
fn declares_no_limits() {
    let limits = echo_conformance::expected_limits(bin()).expect("--expected-limits");
    assert!(limits.is_empty(), "{limits:?}");
}

#[test]
fn rejects_bad_input() {
    echo_conformance::cli::assert_rejects_bad_input(bin());
}

#[test]
fn enforces_max_conns() {
    echo_conformance::limits::assert_max_conns_enforced(bin(), &[]);
}

#[test]
fn shuts_down_gracefully() {
    echo_conformance::limits::assert_graceful_shutdown(bin(), &[]);
}

/// The byte at stream offset `i` of the back-pressure test.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// A client that sends without reading is stopped once its unsent echo
/// reaches `OUTPUT_CAP` (plus what the kernel buffers hold), other clients
/// are served meanwhile, and nothing it sent is lost.
///
/// The last part is the edge-triggered trap: when the server stops at the
/// cap, the rest of the client's bytes are already in the server's receive
/// buffer or held back by a closed window, so no readable event will ever
/// come for them. A loop that waits for one stalls here once the client
/// starts reading; `read_to_end` then times out.
#[test]
fn stops_reading_a_client_that_does_not_read() {
    let server = ServerProcess::spawn(bin(), &[]).expect("spawn");
    let mut hog = server.client();
    // A write that makes no progress for this long means the server has
    // stopped reading from us.
    hog.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // Four socket buffers (two per side) plus the server's own: loopback
    // autotuning keeps each under 8 MiB, so anything past this bound means
    // the server kept reading without bound.
    let bound = OUTPUT_CAP + READ_CHUNK + 4 * 8 * 1024 * 1024;
    let mut sent = 0usize;
    let blocked = loop {
        let chunk: Vec<u8> = (sent..sent + READ_CHUNK).map(pattern).collect();
        match hog.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break true;
            }
            Err(e) => panic!("write after {sent} bytes: {e}"),
        }
        if sent > bound {
            break false;
        }
    };
    assert!(
        blocked,
        "the server read {sent} bytes from a client that never reads"
    );

    // The stalled client does not stall the loop.
    assert_eq!(echo_once(&server, b"not delayed"), b"not delayed");

    // Everything sent comes back, in order, once the client reads.
    hog.shutdown(Shutdown::Write).unwrap();
    let mut echoed = Vec::with_capacity(sent);
    hog.read_to_end(&mut echoed).unwrap();
    assert_eq!(echoed.len(), sent, "echoed bytes");
    if let Some(i) = (0..sent).find(|&i| echoed[i] != pattern(i)) {
        panic!("byte {i} differs: {} instead of {}", echoed[i], pattern(i));
    }
    drop(hog);
    terminate(server);
}

/// With only 64 descriptors, 100 clients exhaust them. The pending
/// connections must not make the loop spin, nor (edge-triggered, one event
/// for the whole backlog) be forgotten in the backlog; the surplus
/// clients are closed rather than left hanging, and once the clients leave
/// a new one is served.
#[test]
fn survives_running_out_of_descriptors() {
    const LIMIT: libc::rlim_t = 64;
    const CLIENTS: usize = 100;
    let mut cmd = Command::new(bin());
    cmd.args(["--addr", "127.0.0.1:0"]);
    let lower_limit = || {
        let limit = libc::rlimit {
            rlim_cur: LIMIT,
            rlim_max: LIMIT,
        };
        // SAFETY: `limit` is a valid rlimit that outlives the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe functions may be called. It calls setrlimit,
    // which is, and allocates nothing (last_os_error only reads errno).
    // The server's own raise to the hard limit then leaves it at 64.
    unsafe {
        cmd.pre_exec(lower_limit);
    }
    let server = ServerProcess::spawn_command(cmd).expect("spawn");

    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| server.client()).collect();
    // A measuring window, not a wait for an event: a loop that spins on
    // the full backlog (or keeps accepting from an empty one) uses most of
    // a core in it, an idle one almost nothing; 30 % is far from both.
    let cpu = || tree::process_cpu_ns(server.pid()).expect("server CPU clock");
    let before = cpu();
    std::thread::sleep(Duration::from_secs(1));
    let spent_ms = (cpu() - before) / 1_000_000;
    assert!(
        spent_ms < 300,
        "the server used {spent_ms} ms of CPU in 1 s while out of descriptors"
    );

    // Every client is either served or closed by the server; none is left
    // waiting in the backlog.
    let (mut served, mut refused) = (0, 0);
    for (i, client) in clients.iter_mut().enumerate() {
        // A refused client may see its write fail once the server's close
        // has arrived; its read tells the verdict either way.
        let _ = client.write_all(b"ping");
        let mut buf = [0u8; 4];
        match client.read_exact(&mut buf) {
            Ok(()) => {
                assert_eq!(&buf, b"ping", "client {i}");
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
            Err(e) => panic!("client {i} neither served nor closed: {e}"),
        }
    }
    assert_eq!(served + refused, CLIENTS);
    assert!(served > 0 && served < LIMIT as usize, "{served} served");
    assert!(refused > 0, "no client was refused: was the limit applied?");

    // Leave cleanly: the server closes each connection before it looks at
    // new ones, so its descriptors are free again when we reconnect.
    for client in &mut clients {
        let _ = client.shutdown(Shutdown::Write);
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest);
        assert!(rest.is_empty(), "bytes after the echo: {rest:?}");
    }
    drop(clients);
    assert_eq!(echo_once(&server, b"fresh"), b"fresh");
    terminate(server);
}
