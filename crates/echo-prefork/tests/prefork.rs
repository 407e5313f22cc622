//! Black-box tests of `echo-prefork`: the shared conformance suite and the
//! fault suite for each hand-off, the command line, `--max-conns`,
//! shutdown, and what is specific to a pool of processes: a killed worker
//! is replaced, workers die with the parent, connections are spread over
//! the workers.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use echo_conformance::{ServerProcess, Verdict, tree};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const MODES: [&str; 3] = ["shared-accept", "reuseport", "pass-fd"];

/// Cases where `reuseport` may fall short with 2 workers and the others do
/// not: each needs a second client served while a first one stays
/// connected, and the kernel picks a client's worker by a hash of its
/// addresses, not by who is idle, so half the time the second client lands
/// in the backlog of the busy worker. Whether it does depends on the
/// client's port, so these cases pass or fall short run by run, and cannot
/// be declared in the binary's one list (a declared limit that passes
/// counts as a failure).
const REUSEPORT_HASH_LIMITS: [&str; 2] = ["reset-isolation", "slow-reader"];

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_echo-prefork"))
}

fn declared() -> Vec<String> {
    echo_conformance::expected_limits(bin()).expect("--expected-limits")
}

#[test]
fn conforms_shared_accept() {
    echo_conformance::assert_conforms(bin(), &["--handoff", "shared-accept"]);
}

#[test]
fn conforms_pass_fd() {
    echo_conformance::assert_conforms(bin(), &["--handoff", "pass-fd"]);
}

/// The suite for `reuseport`, with the hash-dependent cases allowed to
/// pass or fall short; breakage (lost bytes, a crash, a leak) still fails.
#[test]
fn conforms_reuseport() {
    let mut limits = declared();
    limits.extend(REUSEPORT_HASH_LIMITS.map(String::from));
    let server = ServerProcess::spawn(bin(), &["--handoff", "reuseport"]).expect("spawn");
    let report =
        echo_conformance::run_suite(&server.target(), &limits, None, &mut |o| eprintln!("{o}"))
            .expect("the suite runs");
    let status = server.terminate().expect("terminate");
    for o in &report.outcomes {
        let by_hash =
            REUSEPORT_HASH_LIMITS.contains(&o.case) && o.verdict == Verdict::UnexpectedPass;
        assert!(o.verdict.is_ok() || by_hash, "reuseport: {o}\n{report}");
    }
    assert!(status.success(), "exit status {status} after SIGTERM");
}

fn assert_faults(mode: &str) {
    echo_conformance::assert_survives_faults(bin(), &["--handoff", mode]);
}

#[test]
fn survives_faults_shared_accept() {
    assert_faults("shared-accept");
}

#[test]
fn survives_faults_reuseport() {
    assert_faults("reuseport");
}

#[test]
fn survives_faults_pass_fd() {
    assert_faults("pass-fd");
}

#[test]
fn declares_the_limits_of_a_fixed_pool() {
    assert_eq!(
        declared(),
        [
            "concurrent-200",
            "idle-500",
            "beyond-fd-setsize",
            "max-conns"
        ]
    );
}

#[test]
fn rejects_bad_input() {
    echo_conformance::cli::assert_rejects_bad_input(bin());
    for args in [
        &["--workers", "0"][..],
        &["--workers", "many"],
        &["--handoff", "telepathy"],
    ] {
        let out = Command::new(bin()).args(args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error:"), "{args:?}: {err}");
    }
}

/// With 4 workers, `--max-conns 3` is the binding limit, enforced across
/// processes through the shared busy flags (accepting modes) or by the
/// parent (`pass-fd`). Not for `reuseport`: a probe hashed to a busy
/// worker waits in that worker's backlog instead of being turned away.
#[test]
fn enforces_max_conns() {
    for mode in ["shared-accept", "pass-fd"] {
        echo_conformance::limits::assert_max_conns_enforced(
            bin(),
            &["--handoff", mode, "--workers", "4"],
        );
    }
}

#[test]
fn shuts_down_gracefully() {
    for mode in MODES {
        echo_conformance::limits::assert_graceful_shutdown(bin(), &["--handoff", mode]);
    }
}

fn round_trip(addr: SocketAddr, msg: &[u8]) {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(msg).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut echoed = Vec::new();
    c.read_to_end(&mut echoed).expect("echo");
    assert_eq!(echoed, msg);
}

/// The workers: the server's descendants, once there are `n` of them.
fn workers(root: u32, n: usize, deadline: Instant) -> BTreeSet<u32> {
    loop {
        let live: BTreeSet<u32> = tree::members(root)
            .into_iter()
            .skip(1)
            .filter(|s| s.state != 'Z')
            .map(|s| s.pid)
            .collect();
        if live.len() == n {
            return live;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} workers, found {live:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_worker_is_replaced() {
    for mode in MODES {
        let server =
            ServerProcess::spawn(bin(), &["--handoff", mode, "--workers", "2"]).expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(10);
        let before = workers(server.pid(), 2, deadline);
        let victim = *before.first().unwrap();
        kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
        // Back to 2 live workers, the victim not among them, and reaped.
        let after = loop {
            let now = workers(server.pid(), 2, deadline);
            if !now.contains(&victim) {
                break now;
            }
            assert!(Instant::now() < deadline, "{mode}: {victim} never replaced");
            thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(after.intersection(&before).count(), 1, "{mode}: {after:?}");
        let counts = tree::counts(server.pid()).expect("server alive");
        assert_eq!(counts.zombies, 0, "{mode}: the parent must reap");
        // Both workers serve: two clients at once need both of them.
        let mut held = TcpStream::connect(server.addr()).unwrap();
        held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        held.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        held.read_exact(&mut b).unwrap();
        if mode != "reuseport" {
            // (With reuseport the second client may hash to the busy worker.)
            round_trip(server.addr(), b"served by the other worker");
        }
        drop(held);
        round_trip(server.addr(), b"after the replacement");
        let status = server.terminate().expect("terminate");
        assert!(status.success(), "{mode}: {status}");
    }
}

/// A worker that dies young is replaced after a delay that doubles
/// (100 ms, 200 ms, 400 ms...), so a worker that crashes at start cannot
/// make the parent fork in a loop. Only lower bounds are asserted: a busy
/// machine can only make the replacements later.
#[test]
fn a_worker_dying_young_is_replaced_with_back_off() {
    let server = ServerProcess::spawn(bin(), &["--workers", "1"]).expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut victim = *workers(server.pid(), 1, deadline).first().unwrap();
    for k in 0..4u32 {
        kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
        let killed = Instant::now();
        let next = loop {
            let now = workers(server.pid(), 1, deadline);
            let pid = *now.first().unwrap();
            if pid != victim {
                break pid;
            }
            thread::sleep(Duration::from_millis(5));
        };
        let waited = killed.elapsed();
        let delay = Duration::from_millis(100 * 2u64.pow(k));
        assert!(
            waited >= delay * 9 / 10,
            "death {k}: replaced after {waited:?}, expected a back-off of {delay:?}"
        );
        victim = next;
    }
    round_trip(server.addr(), b"served after the crash loop");
    let status = server.terminate().expect("terminate");
    assert!(status.success(), "{status}");
}

#[test]
fn workers_die_with_the_parent() {
    let server = ServerProcess::spawn(bin(), &["--workers", "3"]).expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(10);
    let pids = workers(server.pid(), 3, deadline);
    kill(Pid::from_raw(server.pid() as i32), Signal::SIGKILL).unwrap();
    while pids.iter().any(|&p| tree::alive(p)) {
        assert!(
            Instant::now() < deadline,
            "workers outlived their parent: {pids:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A server started with `--verbose` and its stderr captured.
struct Logged {
    child: Child,
    addr: SocketAddr,
    lines: mpsc::Receiver<String>,
}

impl Logged {
    fn spawn(args: &[&str]) -> Logged {
        let mut child = Command::new(bin())
            .args(args)
            .args(["--verbose", "--addr", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let tx2 = tx.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx2.send(line);
            }
        });
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            if let Some(Ok(line)) = BufReader::new(stdout).lines().next() {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines.recv_timeout(left).expect("no readiness line");
            if let Some(a) = line.strip_prefix("listening on ") {
                break a.parse().unwrap();
            }
        };
        Logged { child, addr, lines }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// Sequential clients, each finished before the next: which worker served
/// each one is read from the `--verbose` log. Every worker must serve
/// some: FIFO wake-ups of `accept`, the reuseport hash, the parent's
/// round robin.
#[test]
fn connections_are_spread_over_workers() {
    const CLIENTS: usize = 60;
    for mode in MODES {
        let server = Logged::spawn(&["--handoff", mode, "--workers", "3"]);
        for i in 0..CLIENTS {
            round_trip(server.addr, format!("client {i}").as_bytes());
        }
        let mut served: BTreeMap<String, usize> = BTreeMap::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while served.values().sum::<usize>() < CLIENTS {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = server.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!("{mode}: only {served:?} connections logged of {CLIENTS}")
            });
            // "worker <pid>: <peer>: connected"
            if let (Some(rest), true) =
                (line.strip_prefix("worker "), line.ends_with(": connected"))
            {
                let pid = rest.split(':').next().unwrap().to_string();
                *served.entry(pid).or_default() += 1;
            }
        }
        assert_eq!(served.len(), 3, "{mode}: connections per worker {served:?}");
        eprintln!("{mode}: connections per worker {served:?}");
    }
}
