//! Black-box tests of `echo-bench load` against small echo servers written
//! here: a correct thread-per-connection one, and one that corrupts a byte.
//!
//! The binary runs as a child with a deadline; the servers use read
//! timeouts; so a bug makes a test fail, never hang.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

const BENCH: &str = env!("CARGO_BIN_EXE_echo-bench");
const DEADLINE: Duration = Duration::from_secs(90);

/// Starts an echo server on a free port. With `flip_at = Some(n)`, byte `n`
/// of every connection's stream comes back with its bits inverted.
fn echo_server(flip_at: Option<u64>) -> SocketAddr {
    echo_protocol::raise_nofile_limit().expect("raise RLIMIT_NOFILE");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            // Small stacks: the 2,000-connection test spawns 2,000 of these.
            let _ = thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || serve(conn, flip_at));
        }
    });
    addr
}

fn serve(mut conn: TcpStream, flip_at: Option<u64>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = [0u8; 4096];
    let mut offset = 0u64;
    loop {
        let n = match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Some(at) = flip_at
            && (offset..offset + n as u64).contains(&at)
        {
            buf[(at - offset) as usize] ^= 0xff;
        }
        offset += n as u64;
        if conn.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// Runs echo-bench with `args`, killing it if it outlives [`DEADLINE`].
fn bench(args: &[&str]) -> Output {
    let child = Command::new(BENCH)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn echo-bench");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(out) => out.expect("wait for echo-bench"),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("echo-bench {args:?} did not finish within {DEADLINE:?}");
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("echo-bench-test-{}-{name}", std::process::id()))
}

#[test]
fn load_verifies_prints_figures_and_writes_hyperfine_json() {
    let addr = echo_server(None).to_string();
    let json = temp_path("load.json");
    let out = bench(&[
        "load",
        "--addr",
        &addr,
        "--conns",
        "10",
        "--size",
        "100",
        "--messages",
        "1005",
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        text(&out.stderr)
    );
    // 1005 over 10 connections: five get 101, five get 100, all verified
    assert!(
        stdout.contains("messages     1005 verified (100 B each)"),
        "{stdout}"
    );
    assert!(stdout.contains("errors       none"), "{stdout}");
    for figure in [
        "elapsed", "msgs/s", "MB/s", "p50", "p90", "p99", "p99.9", "max",
    ] {
        assert!(stdout.contains(figure), "no {figure} in:\n{stdout}");
    }

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written")).unwrap();
    let _ = std::fs::remove_file(&json);
    let results = v["results"].as_array().expect("results array");
    assert_eq!(results.len(), 1);
    let r = &results[0];
    assert!(r["command"].as_str().unwrap().contains("load"));
    for key in [
        "mean",
        "median",
        "user",
        "system",
        "min",
        "max",
        "throughput_msgs_per_s",
    ] {
        assert!(r[key].is_f64(), "{key} is not a number: {}", r[key]);
    }
    assert!(r["mean"].as_f64().unwrap() > 0.0);
    assert!(r["stddev"].is_null(), "one repetition has no stddev");
    assert_eq!(r["times"].as_array().unwrap().len(), 1);
    assert!(r["times"][0].is_f64());
    assert_eq!(r["exit_codes"], serde_json::json!([0]));
    let params = r["parameters"].as_object().unwrap();
    assert_eq!(params["conns"], "10");
    assert_eq!(params["size"], "100");
    assert_eq!(params["messages"], "1005");
    assert!(params.values().all(|v| v.is_string()));
    for p in ["p50", "p90", "p99", "p999", "max"] {
        assert!(r["latency_us"][p].is_u64(), "latency_us.{p}");
    }
    assert!(r["latency_us"]["max"].as_u64().unwrap() >= r["latency_us"]["p50"].as_u64().unwrap());
    assert!(r["server"].is_null(), "load knows no server");
    assert!(r["client"]["cpu_s"].is_f64());
    assert!(r["client"]["saturated"].is_boolean());
}

#[test]
fn a_corrupted_byte_is_a_mismatch_and_a_failure() {
    let addr = echo_server(Some(150)).to_string();
    let out = bench(&[
        "load",
        "--addr",
        &addr,
        "--conns",
        "3",
        "--size",
        "64",
        "--messages",
        "30",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "stdout:\n{stdout}");
    // byte 150 is byte 22 of message 2 on every connection
    assert!(stdout.contains("mismatch 3"), "{stdout}");
    assert!(
        stdout.contains("mismatch at stream byte 150 (message 2, byte 22)"),
        "{stdout}"
    );
    assert!(!stdout.contains("messages     30 verified"), "{stdout}");
}

#[test]
fn bad_flags_are_one_line_and_status_2() {
    let addr = "127.0.0.1:9";
    for args in [
        &["load", "--conns", "1", "--messages", "1"][..], // no --addr
        &["load", "--addr", addr, "--conns", "0", "--messages", "1"],
        &["load", "--addr", addr, "--messages", "1", "--duration", "1"],
        &["load", "--addr", addr], // neither --messages nor --duration
        &["load", "--addr", addr, "--messages", "1", "--rate", "-5"],
        &["load", "--addr", "nonsense", "--messages", "1"],
        &["run", "no-such-model"],
        &["frobnicate"],
        &[],
    ] {
        let out = bench(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{args:?} should give one line: {stderr}"
        );
        assert!(stderr.starts_with("echo-bench: "), "{stderr}");
    }
}

#[test]
fn unreachable_server_is_a_runtime_failure() {
    // Bind then drop: nothing listens on that port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let out = bench(&[
        "load",
        "--addr",
        &addr,
        "--conns",
        "2",
        "--size",
        "8",
        "--messages",
        "4",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("connect 2"), "{stdout}");
}

#[test]
fn open_loop_at_a_fixed_rate() {
    let addr = echo_server(None).to_string();
    let out = bench(&[
        "load",
        "--addr",
        &addr,
        "--conns",
        "4",
        "--size",
        "32",
        "--messages",
        "400",
        "--rate",
        "2000",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("open loop at 2000 msg/s"), "{stdout}");
    assert!(stdout.contains("messages     400 verified"), "{stdout}");
    // 400 messages at 2000/s are scheduled over 0.2 s: the run cannot be
    // shorter than its schedule.
    let elapsed: f64 = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("elapsed")?
                .trim()
                .strip_suffix(" s")?
                .parse()
                .ok()
        })
        .expect("elapsed line");
    assert!(elapsed >= 0.19, "{elapsed}");
}

#[test]
fn duration_mode_counts_what_came_back() {
    let addr = echo_server(None).to_string();
    let out = bench(&[
        "load",
        "--addr",
        &addr,
        "--conns",
        "2",
        "--size",
        "16",
        "--duration",
        "0.3",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let n: u64 = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("messages")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .expect("messages line");
    assert!(n > 0, "{stdout}");
}

#[test]
fn two_thousand_connections_on_two_threads() {
    let addr = echo_server(None).to_string();
    let out = bench(&[
        "load",
        "--addr",
        &addr,
        "--conns",
        "2000",
        "--size",
        "16",
        "--messages",
        "4000",
        "--threads",
        "2",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("over 2000 connection(s)"), "{stdout}");
    assert!(stdout.contains("messages     4000 verified"), "{stdout}");
    assert!(stdout.contains("errors       none"), "{stdout}");
}

#[test]
fn open_loop_duration_mode_ends_at_a_rate_that_does_not_divide_a_second() {
    // The settings of a reported hang, scaled down: many connections, a
    // per-connection interval that is not a whole number of nanoseconds in
    // floating point. The run must end (the bench helper kills it after
    // its deadline) with every scheduled message echoed.
    let addr = echo_server(None).to_string();
    let out = bench(&[
        "load",
        "--addr",
        &addr,
        "--conns",
        "300",
        "--size",
        "64",
        "--rate",
        "7777.7",
        "--duration",
        "1.5",
        "--threads",
        "2",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("errors       none"), "{stdout}");
    let n: u64 = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("messages")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .expect("messages line");
    // Each connection sends every 300/7777.7 s (rounded to the ns), from an
    // offset spread over one interval; what is scheduled strictly before
    // 1.5 s is what must come back: 38 or 39 messages per connection.
    let interval = (300e9_f64 / 7777.7).round() as u64;
    let expected: u64 = (0..300u64)
        .map(|id| {
            let offset = id * interval / 300;
            (1_500_000_000 - offset - 1) / interval + 1
        })
        .sum();
    assert_eq!(n, expected, "{stdout}");
}
