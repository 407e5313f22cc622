//! `echo-bench run` reports what a server left behind: zombie children once
//! its clients have gone, and processes that outlive it after SIGTERM. A
//! forking server that never reaps (`test-servers`' `broken-zombies`) must
//! show one zombie per client; the fork-per-client model, which reaps,
//! none; neither leaves a process behind.

mod common;

use std::process::Command;
use std::time::Duration;

use common::BENCH;

const CONNS: u64 = 6;

/// `echo-bench run --bin BIN` over CONNS connections; the `server` object
/// of its JSON result.
fn aftermath(package: &str, bin: &str) -> serde_json::Value {
    let json = std::env::temp_dir().join(format!("aftermath-{}-{bin}.json", std::process::id()));
    let mut cmd = Command::new(BENCH);
    cmd.arg("run")
        .arg("--bin")
        .arg(common::workspace_bin(package, bin))
        .args(["--repeat", "1", "--conns", &CONNS.to_string()])
        .args(["--messages", &(10 * CONNS).to_string()])
        .arg("--json")
        .arg(&json);
    let out = common::bounded(cmd, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "echo-bench run --bin {bin} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("  after: "),
        "no aftermath line in: {stdout}"
    );
    let text = std::fs::read_to_string(&json).expect("the JSON was written");
    let _ = std::fs::remove_file(&json);
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    v["results"][0]["server"].clone()
}

#[test]
fn a_server_that_never_reaps_shows_a_zombie_per_client() {
    let server = aftermath("test-servers", "broken-zombies");
    assert_eq!(server["zombies_after"], CONNS, "{server}");
    assert_eq!(server["left_behind"], 0, "{server}");
}

#[test]
fn the_fork_per_client_model_leaves_nothing() {
    let server = aftermath("echo-fork-per-client", "echo-fork-per-client");
    assert_eq!(server["zombies_after"], 0, "{server}");
    assert_eq!(server["left_behind"], 0, "{server}");
}
