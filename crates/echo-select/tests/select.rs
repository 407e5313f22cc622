//! Black-box tests of `echo-select`: the shared conformance suite (with its
//! one declared limit) and fault suite, the command line, `--max-conns`,
//! shutdown, and what is `select`'s own: descriptors at or past
//! `FD_SETSIZE` refused cleanly, write interest only while output is
//! pending, and a client out of the read set not stalling the others.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use echo_conformance::{ServerProcess, tree};
use echo_select::{FD_SETSIZE, OUTPUT_CAP, READ_CHUNK};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_echo-select"))
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

/// This process holds more than a thousand sockets in some tests.
fn raise_our_nofile_limit() {
    let limit = echo_protocol::raise_nofile_limit().expect("raise RLIMIT_NOFILE");
    assert!(
        limit >= 2 * FD_SETSIZE as u64,
        "the open-files hard limit is {limit}; these tests need {}",
        2 * FD_SETSIZE
    );
}

#[test]
fn conforms() {
    echo_conformance::assert_conforms(bin(), &[]);
}

#[test]
fn survives_the_faults() {
    echo_conformance::assert_survives_faults(bin(), &[]);
}

/// The one case past `FD_SETSIZE`, and nothing else.
#[test]
fn declares_only_beyond_fd_setsize() {
    let limits = echo_conformance::expected_limits(bin()).expect("--expected-limits");
    assert_eq!(limits, ["beyond-fd-setsize"], "{limits:?}");
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

/// What became of one client of the crowd.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    Served,
    Closed,
}

/// Writes one byte and reads it back before `deadline`: served, or closed
/// by the server (EOF or reset). Anything else (no answer by the
/// deadline, a wrong byte) fails the test.
fn round_trip(id: usize, c: &mut TcpStream, deadline: Instant) -> Fate {
    let byte = [(id % 251) as u8];
    // A refused client may see its write fail once the server's close has
    // arrived; its read tells the verdict either way.
    let _ = c.write_all(&byte);
    let wait = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    c.set_read_timeout(Some(wait)).unwrap();
    let mut got = [0u8; 1];
    match c.read(&mut got) {
        Ok(1) => {
            assert_eq!(got, byte, "client {id}: wrong byte");
            Fate::Served
        }
        Ok(_) => Fate::Closed,
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
            Fate::Closed
        }
        Err(e) => panic!("client {id} neither served nor closed: {e}"),
    }
}

/// Clients whose descriptor in the server would be `FD_SETSIZE` or more
/// are closed (EOF or reset, never left hanging), the server neither
/// panics nor stops serving the clients below, and once the crowd leaves a
/// new client is served.
#[test]
fn refuses_descriptors_beyond_fd_setsize() {
    const CLIENTS: usize = FD_SETSIZE + 100;
    raise_our_nofile_limit();
    let server = ServerProcess::spawn(bin(), &[]).expect("spawn");
    // One echo first: then the loop runs and holds all its own descriptors
    // (the spare is opened after the readiness line), plus this client's.
    // Whatever the server inherited counts too, so the room left below
    // FD_SETSIZE is known exactly.
    let mut first = server.client();
    assert_eq!(
        round_trip(0, &mut first, Instant::now() + Duration::from_secs(5)),
        Fate::Served
    );
    let room = FD_SETSIZE - descriptors_below_fd_setsize(server.pid());
    // Connected one after the other, so the server accepts them in this
    // order and hands out the lowest free descriptor to each in turn.
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| server.client()).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    let fates: Vec<Fate> = clients
        .iter_mut()
        .enumerate()
        .map(|(id, c)| round_trip(id, c, deadline))
        .collect();
    assert!(tree::alive(server.pid()), "the server died");
    let served = fates.iter().take_while(|&f| *f == Fate::Served).count();
    // Every descriptor below FD_SETSIZE serves a client: not one fewer (a
    // cap set too low), not one more (a descriptor past the bitmap).
    assert_eq!(served, room, "clients served before the first refusal");
    assert!(
        fates[served..].iter().all(|f| *f == Fate::Closed),
        "a client after the first refused one was served: {:?}",
        fates[served..].iter().position(|f| *f == Fate::Served)
    );

    // The ones below FD_SETSIZE are still served, each once more.
    let deadline = Instant::now() + Duration::from_secs(20);
    for (id, c) in clients[..served].iter_mut().enumerate() {
        assert_eq!(
            round_trip(id, c, deadline),
            Fate::Served,
            "client {id}, second round"
        );
    }

    // Leave cleanly, and wait for each EOF: the server has closed them all
    // by then, so descriptors below 1024 are free for the next client.
    for c in &mut clients[..served] {
        c.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "bytes after the echo: {rest:?}");
    }
    drop(clients);
    drop(first);
    assert_eq!(echo_once(&server, b"fresh"), b"fresh");
    terminate(server);
}

/// How many of `pid`'s open descriptors `select` could watch.
fn descriptors_below_fd_setsize(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read the server's descriptors")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<usize>().ok())
        .filter(|&fd| fd < FD_SETSIZE)
        .count()
}

/// Started with descriptors 3 to `FD_SETSIZE` already taken, the server's
/// listener lands past the bitmap: it must say so and exit 1, not panic.
#[test]
fn a_listener_beyond_fd_setsize_is_a_clear_error() {
    raise_our_nofile_limit();
    let mut cmd = Command::new(bin());
    cmd.args(["--addr", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // The duplicates of stdin survive exec (dup2 clears FD_CLOEXEC), so
    // the server starts with them all open.
    // SAFETY: runs between fork and exec; it calls only dup2, which is
    // async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            for fd in 3..=FD_SETSIZE as i32 {
                if libc::dup2(0, fd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server did not exit within 10 s");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "status {status}, stderr: {stderr}");
    assert!(
        stderr.contains("listener's descriptor") && stderr.contains("FD_SETSIZE"),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}

/// With 200 clients connected, each echoed once and then silent, the
/// server sleeps in `select`: no output is pending, so no client is in the
/// write set, and nothing is ready. A loop that kept every client in the
/// write set would return at once every round and burn a core.
#[test]
fn idle_clients_cost_no_cpu() {
    let server = ServerProcess::spawn(bin(), &[]).expect("spawn");
    let mut clients: Vec<TcpStream> = (0..200).map(|_| server.client()).collect();
    for (id, c) in clients.iter_mut().enumerate() {
        let msg = format!("client {id}");
        c.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0u8; msg.len()];
        c.read_exact(&mut back).unwrap();
        assert_eq!(back, msg.as_bytes());
    }
    let pid = server.pid();
    let (t0, c0) = (Instant::now(), tree::cpu_ns(pid).expect("cpu"));
    // A measuring window, not a wait for something to happen.
    thread::sleep(Duration::from_secs(1));
    let (t1, c1) = (Instant::now(), tree::cpu_ns(pid).expect("cpu"));
    let share = (c1 - c0) as f64 / (t1 - t0).as_nanos() as f64;
    // Idle, it uses well under 1 % of a core. Spinning, it takes all the
    // core it gets: a third of one even in a debug build sharing two cores
    // with the rest of the test suite. A tenth sits far from both.
    assert!(
        share < 0.10,
        "the server used {:.0} % of a core with 200 idle clients",
        share * 100.0
    );
    drop(clients);
    terminate(server);
}

/// A client that sends without reading leaves the read set once its
/// unsent echo passes `OUTPUT_CAP`: its writes stall, another client is
/// served meanwhile, and every byte comes back in order once it reads.
#[test]
fn back_pressure_stalls_only_the_client_that_does_not_read() {
    let server = ServerProcess::spawn(bin(), &[]).expect("spawn");
    let mut hog = server.client();
    // No progress for this long: the server stopped reading from us.
    hog.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // Socket buffers on both sides (loopback autotuning keeps each under
    // 8 MiB) plus the server's own: past this, it read without bound.
    let bound = OUTPUT_CAP + READ_CHUNK + 4 * 8 * 1024 * 1024;
    let pattern = |i: usize| (i % 253) as u8;
    let mut sent = 0usize;
    while sent <= bound {
        let chunk: Vec<u8> = (sent..sent + READ_CHUNK).map(pattern).collect();
        match hog.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("write after {sent} bytes: {e}"),
        }
    }
    assert!(sent <= bound, "the server read {sent} bytes and kept going");
    assert_eq!(echo_once(&server, b"not delayed"), b"not delayed");

    hog.shutdown(Shutdown::Write).unwrap();
    let mut echoed = Vec::with_capacity(sent);
    hog.read_to_end(&mut echoed).unwrap();
    assert_eq!(echoed.len(), sent, "echoed bytes");
    let wrong = (0..sent).find(|&i| echoed[i] != pattern(i));
    assert_eq!(wrong, None, "first differing offset");
    drop(hog);
    terminate(server);
}
