//! What the black-box tests of `echo-bench` share: finding a workspace
//! binary to benchmark, and running a command with a deadline.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// The echo-bench under test.
pub const BENCH: &str = env!("CARGO_BIN_EXE_echo-bench");

/// Binary `bin` of workspace package `package`: next to echo-bench when
/// the workspace was built (`cargo test --workspace` builds every binary),
/// else built now into the same target directory and profile.
pub fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    let dir = Path::new(BENCH)
        .parent()
        .expect("echo-bench has a directory");
    let path = dir.join(bin);
    if path.is_file() {
        return path;
    }
    let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet", "-p", package, "--bin", bin])
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml"))
        .arg("--target-dir")
        .arg(dir.parent().expect("a target directory"));
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let out = bounded(cmd, Duration::from_secs(600));
    assert!(
        out.status.success() && path.is_file(),
        "cannot build {bin}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// Runs `cmd` with stdout and stderr captured, killing it after `limit`.
pub fn bounded(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("waiting"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{cmd:?} still running after {} s; killed", limit.as_secs());
        }
    }
}
