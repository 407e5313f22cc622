//! Black-box tests of `echo-sigio`: the shared conformance suite and fault
//! suite, the command line, `--max-conns`, shutdown, the two things every
//! edge-like loop must do by hand (resume a client stopped at `OUTPUT_CAP`,
//! survive `EMFILE` without spinning), and what is this model's own: a
//! real-time signal queue that overflows. The server is then given a tiny
//! `RLIMIT_SIGPENDING` (set by `setrlimit(2)` between `fork` and `exec`),
//! so that the kernel falls back to a bare `SIGIO` and the server must find
//! the lost news by a scan of every connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use echo_conformance::ServerProcess;
use echo_sigio::OUTPUT_CAP;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_echo-sigio"))
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

/// SIGTERM with no client open: the server must exit at once, not when
/// the shutdown thread's grace period runs out (5 s). The trap: once the
/// listener is closed and no connection is left, no socket can send a
/// signal, so a loop that goes on to sleep for one sleeps until the grace
/// period ends the process. Ten servers, since whether a signal from the
/// shutdown thread's wake-up connection happens to come after the flag
/// is seen is a matter of timing.
#[test]
fn exits_at_once_when_idle() {
    for i in 0..10 {
        let mut server = ServerProcess::spawn(bin(), &[]).expect("spawn");
        let mut c = server.client();
        c.write_all(b"x").unwrap();
        let mut byte = [0u8; 1];
        c.read_exact(&mut byte).expect("echo");
        drop(c);
        server.sigterm().expect("SIGTERM");
        let status = server
            .wait_timeout(Duration::from_secs(3))
            .unwrap_or_else(|| panic!("server {i}: still running 3 s after SIGTERM"));
        assert!(status.success(), "server {i}: exit status {status}");
    }
}

/// A client that sends without reading is stopped once its unsent echo
/// reaches `OUTPUT_CAP` (plus what the kernel buffers hold), other clients
/// are served meanwhile, and nothing it sent is lost. The trap is the same
/// as edge-triggered epoll's: when the server stops at the cap, the bytes
/// still in its receive buffer have already been signalled, and no new
/// signal comes for them; the server must resume by itself once the
/// `POLL_OUT` signal lets its output drain.
#[test]
fn stops_reading_a_client_that_does_not_read() {
    echo_conformance::limits::assert_back_pressure(bin(), &[], OUTPUT_CAP);
}

/// With only 64 descriptors, 100 clients exhaust them: the listener's
/// backlog must not be forgotten (one signal per connection, none while it
/// stays full) nor retried in a spin, the surplus clients are closed
/// rather than left hanging, and once the clients leave a new one is served.
#[test]
fn survives_running_out_of_descriptors() {
    echo_conformance::limits::assert_sheds_when_out_of_descriptors(bin(), &[]);
}

/// Makes `cmd`'s process start with `RLIMIT_SIGPENDING` at `limit`, soft
/// and hard: at most `limit` signals queued for the user before the kernel
/// refuses a real-time signal (and sends its bare `SIGIO` instead).
fn limit_sigpending(cmd: &mut Command, limit: u64) {
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed; it makes one `setrlimit(2)`
    // call and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let rlim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_SIGPENDING, &rlim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// With no room at all in the signal queue, every real-time signal
/// overflows and every piece of news arrives as a bare `SIGIO` naming no
/// descriptor: the server degrades into one that scans every connection
/// on every signal, and must still pass the whole conformance suite (the
/// cases with hundreds of connections included).
#[test]
fn conforms_when_every_signal_overflows() {
    let mut cmd = Command::new(bin());
    cmd.args(["--addr", "127.0.0.1:0"]);
    limit_sigpending(&mut cmd, 0);
    let server = ServerProcess::spawn_command(cmd).expect("spawn");
    let report =
        echo_conformance::run_suite(&server.target(), &[], None, &mut |o| eprintln!("{o}"))
            .expect("the suite runs");
    let status = server.terminate().expect("terminate");
    assert!(report.ok(), "RLIMIT_SIGPENDING 0:\n{report}");
    assert!(status.success(), "exit status {status}");
}

/// A server started with `--verbose` and a small `RLIMIT_SIGPENDING`, its
/// stderr collected line by line.
struct Logged {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
}

impl Logged {
    fn spawn(sigpending: u64) -> Logged {
        let mut cmd = Command::new(bin());
        cmd.args(["--verbose", "--addr", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        limit_sigpending(&mut cmd, sigpending);
        let mut child = cmd.spawn().expect("spawn");
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (ready_tx, ready_rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = ready_tx.send(line);
        });
        let ready = ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("no readiness line within 10 s");
        let addr = ready
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("readiness line: {ready:?}"))
            .parse()
            .unwrap();
        Logged { child, addr, lines }
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) with our own child's pid, which is not reaped
        // before `Drop`, so the pid cannot name another process.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Waits at most 10 s for a log line containing `what`.
    fn wait_for(&self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no line with {what:?} logged: {e}"));
            if line.contains(what) {
                return line;
            }
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 200 clients connected and served; the server is stopped (`SIGSTOP`),
/// each client writes a message, the server is continued. Stopped, it
/// cannot read its signals, so with 8 places in the queue the kernel
/// refuses the other real-time signals and sends `SIGIO`: the server sees
/// 8 named descriptors (or fewer) and "something else happened". Every
/// client must get its message back, which only the scan can bring about
/// (a server that ignored `SIGIO` leaves about 190 clients waiting, and
/// their reads time out), and the log must say that the queue overflowed.
/// Then all half-close and must see their EOF. Without the stop, the
/// server might drain the queue as fast as the clients fill it, and the
/// test would prove nothing about overflow.
#[test]
fn serves_every_client_when_the_signal_queue_overflows() {
    const CLIENTS: usize = 200;
    let server = Logged::spawn(8);
    let mut clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|i| {
            let mut c =
                TcpStream::connect_timeout(&server.addr, Duration::from_secs(5)).expect("connect");
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.set_nodelay(true).unwrap();
            let msg = format!("hello from {i}\n");
            c.write_all(msg.as_bytes()).unwrap();
            let mut back = vec![0; msg.len()];
            c.read_exact(&mut back)
                .unwrap_or_else(|e| panic!("client {i}, before the stop: {e}"));
            assert_eq!(back, msg.as_bytes());
            c
        })
        .collect();

    server.signal(libc::SIGSTOP);
    let messages: Vec<Vec<u8>> = (0..CLIENTS)
        .map(|i| format!("message {i} {}\n", "x".repeat(i % 61)).into_bytes())
        .collect();
    for (c, msg) in clients.iter_mut().zip(&messages) {
        c.write_all(msg).unwrap();
    }
    server.signal(libc::SIGCONT);

    for (i, (c, msg)) in clients.iter_mut().zip(&messages).enumerate() {
        let mut back = vec![0; msg.len()];
        c.read_exact(&mut back)
            .unwrap_or_else(|e| panic!("client {i} of {CLIENTS}, after the overflow: {e}"));
        assert_eq!(back, *msg, "client {i}");
    }
    server.wait_for("signal queue overflowed");

    for c in &mut clients {
        c.shutdown(Shutdown::Write).unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let mut rest = Vec::new();
        c.read_to_end(&mut rest)
            .unwrap_or_else(|e| panic!("client {i}: no EOF: {e}"));
        assert!(rest.is_empty(), "client {i}: bytes after the echo");
    }
}

/// Sends `sig` to the server.
fn signal(server: &ServerProcess, sig: libc::c_int) {
    // SAFETY: kill(2) with the pid of a child that `server` has not reaped,
    // so the pid cannot name another process.
    let rc = unsafe { libc::kill(server.pid() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
}

/// Signals queued for the server's user, from the `SigQ` line of
/// `/proc/<pid>/status` (`queued/limit`).
fn queued_signals(server: &ServerProcess) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .expect("the server's /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigQ:"))
        .and_then(|v| v.trim().split('/').next()?.parse().ok())
        .expect("a SigQ line")
}

/// A signal can outlive its socket: queued for descriptor N, read after N
/// was closed and given to a new client. Staged with the server stopped:
/// client B connects (a signal for the listener), then client A sends
/// one-byte segments until 300 more signals are queued (for A's
/// descriptor N) and resets (one more, with `POLLERR` in its band). Continued, the server reads 256
/// signals in its first turn: it tries A, whose echo fails on the reset,
/// closes N and accepts B, which gets N, the lowest free descriptor. Its
/// next turns read the rest of A's signals, now naming B's descriptor,
/// the reset among them. B must not be harmed: a server that believed the
/// band and closed the socket "in error" would close B, whose round trip
/// then fails; a stale signal must cost a `read` that says `EAGAIN`, no more.
#[test]
fn stale_signals_for_a_reused_descriptor_are_harmless() {
    let server = ServerProcess::spawn(bin(), &[]).expect("spawn");
    let mut a = server.client();
    a.set_nodelay(true).unwrap();
    a.write_all(b"a").unwrap();
    let mut byte = [0u8; 1];
    a.read_exact(&mut byte).expect("A's first echo");

    signal(&server, libc::SIGSTOP);
    let mut b = server.client();
    // Back-to-back small writes leave as few segments (and bring few
    // signals): a pause after each lets most leave on their own. Whether
    // enough did is not assumed but read from the queue as the kernel
    // counts it. (The count is the user's, other processes included, which
    // could only overstate A's share by what they queue meanwhile.)
    let base = queued_signals(&server);
    let deadline = Instant::now() + Duration::from_secs(10);
    while queued_signals(&server) < base + 300 {
        assert!(
            Instant::now() < deadline,
            "A's writes did not queue 300 signals within 10 s"
        );
        a.write_all(b"x").unwrap();
        thread::sleep(Duration::from_millis(1));
    }
    // SO_LINGER 0: close sends RST instead of FIN.
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on A's open socket with a live, correctly sized
    // linger value.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&a),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
    drop(a);
    signal(&server, libc::SIGCONT);

    for i in 0..20 {
        let msg = format!("B's round trip {i}\n");
        b.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0; msg.len()];
        b.read_exact(&mut back)
            .unwrap_or_else(|e| panic!("B's round trip {i}, after A's stale signals: {e}"));
        assert_eq!(back, msg.as_bytes());
    }
    b.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    b.read_to_end(&mut rest).expect("B's EOF");
    assert!(rest.is_empty(), "bytes after B's echo");
    let status = server.terminate().expect("terminate");
    assert!(status.success(), "exit status {status}");
}
