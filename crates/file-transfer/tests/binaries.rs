//! `ft-server` and `ft-client` as processes: the readiness line, the
//! client's output and exit statuses, a loop that sleeps while transfers
//! stall, and SIGTERM ending the server cleanly with an upload in progress.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use echo_conformance::tree;
use file_transfer::client;
use file_transfer::proto::{self, Request};
use file_transfer::server::{SHUTDOWN_GRACE, TEMP_PREFIX};

const SERVER: &str = env!("CARGO_BIN_EXE_ft-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_ft-client");

/// Kills the server if a test fails before it ends by itself.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(root: &Path) -> (Guard, SocketAddr) {
    let mut child = Command::new(SERVER)
        .args(["--addr", "127.0.0.1:0", "--dir"])
        .arg(root.join("store"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    // Bounded by the server: it prints the line or exits (EOF).
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("no readiness line: {line:?}"))
        .trim()
        .parse()
        .unwrap();
    (Guard(child), addr)
}

fn ft_client(addr: SocketAddr, args: &[&str], cwd: &Path) -> Output {
    Command::new(CLIENT)
        .arg("--addr")
        .arg(addr.to_string())
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// A test's folder, removed when the test ends, passed or failed.
struct Root(PathBuf);

impl Drop for Root {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl std::ops::Deref for Root {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

fn fresh_root(tag: &str) -> Root {
    let root = std::env::temp_dir().join(format!("ft-bin-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).unwrap();
    Root(root)
}

/// The process's user + system CPU time, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = tree::stat(pid).expect("the server is running");
    stat.utime + stat.stime
}

fn open_fds(pid: u32) -> u64 {
    tree::counts(pid).expect("the server is running").fds
}

/// The server's descriptor count once it has stayed the same for 100 ms
/// (twenty polls 5 ms apart), within at most 5 s.
fn settled_fds(pid: u32) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut last, mut same) = (open_fds(pid), 0);
    while same < 20 {
        assert!(
            Instant::now() < deadline,
            "after 5 s: the descriptor count never settled (last {last})"
        );
        thread::sleep(Duration::from_millis(5));
        let now = open_fds(pid);
        if now == last {
            same += 1;
        } else {
            (last, same) = (now, 0);
        }
    }
    last
}

/// Polls `cond` every 5 ms until it holds, for at most 5 s.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "after 5 s: {what}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_client_commands_and_their_exit_statuses() {
    let root = fresh_root("cli");
    let (server, addr) = start(&root);
    let pid = server.0.id();
    // Listener, epoll, eventfd, the spare descriptor, stdio: at rest. The
    // readiness line comes before the loop opens its own descriptors (and
    // sweeps the folder through a directory handle), so the count is taken
    // after a first request has been served, once it has stopped moving.
    let warm_up = ft_client(addr, &["list"], &root);
    assert!(warm_up.status.success(), "{warm_up:?}");
    let at_rest = settled_fds(pid);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(root.join("local.bin"), &data).unwrap();

    let up = ft_client(
        addr,
        &["upload", "local.bin", "--name", "remote.bin"],
        &root,
    );
    assert!(up.status.success(), "{up:?}");
    let digest = proto::to_hex(&proto::sha256(&data));
    assert!(String::from_utf8_lossy(&up.stdout).contains(&digest));

    let list = ft_client(addr, &["list"], &root);
    assert_eq!(String::from_utf8_lossy(&list.stdout), "300000 remote.bin\n");

    let down = ft_client(
        addr,
        &["download", "remote.bin", "--out", "back.bin"],
        &root,
    );
    assert!(down.status.success(), "{down:?}");
    assert_eq!(fs::read(root.join("back.bin")).unwrap(), data);

    // Failures: one line on stderr, status 1.
    for args in [
        &["download", "absent"][..],
        &["upload", "no-such-local-file"],
        &["upload", "local.bin", "--name", "../up"],
    ] {
        let out = ft_client(addr, args, &root);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("ft-client: "), "{args:?}: {err}");
    }
    // Bad arguments: status 2.
    for args in [&["frob"][..], &["upload"], &["list", "extra"]] {
        assert_eq!(
            ft_client(addr, args, &root).status.code(),
            Some(2),
            "{args:?}"
        );
    }
    // Every connection, served or refused, gave its descriptor back, and
    // no file was left open.
    wait_until("descriptors back to the count at rest", || {
        open_fds(pid) == at_rest
    });
}

#[test]
fn stalled_transfers_cost_no_cpu_and_sigterm_ends_the_server_cleanly() {
    let root = fresh_root("term");
    let (mut server, addr) = start(&root);
    let pid = server.0.id();

    // An upload that stops halfway, and a header that stops halfway.
    let data = vec![7u8; 100_000];
    let mut upload = client::connect(addr).unwrap();
    client::send_request(
        &mut upload,
        &Request::Upload {
            name: "stalled".into(),
            size: data.len() as u64,
            sha256: proto::to_hex(&proto::sha256(&data)),
        },
    )
    .unwrap();
    assert!(client::read_reply(&mut upload).unwrap().ok);
    upload.write_all(&data[..50_000]).unwrap();
    let mut header = client::connect(addr).unwrap();
    header.write_all(&100u32.to_be_bytes()).unwrap();

    // A loop that spun on them would burn about 100 ticks a second.
    let before = cpu_ticks(pid);
    thread::sleep(Duration::from_millis(500));
    let idle = cpu_ticks(pid) - before;
    assert!(
        idle <= 10,
        "{idle} ticks of CPU in 0.5 s with two stalled transfers"
    );

    let store = root.join("store");
    let temps = || {
        fs::read_dir(&store)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(TEMP_PREFIX)
            })
            .count()
    };
    assert_eq!(temps(), 1);

    // SAFETY: kill(2) on our own child's pid, which it keeps until we
    // wait for it (the Guard does), so the number names no other process.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    // The stalled upload holds the server for SHUTDOWN_GRACE; it must not
    // spin while it waits either.
    let before = cpu_ticks(pid);
    thread::sleep(Duration::from_millis(500));
    let waiting = cpu_ticks(pid) - before;
    assert!(
        waiting <= 10,
        "{waiting} ticks of CPU in 0.5 s of shutdown grace"
    );

    let deadline = Instant::now() + SHUTDOWN_GRACE + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert_eq!(temps(), 0, "the abandoned upload's temporary file is left");
    assert!(!store.join("stalled").exists());
    drop((upload, header));
}
