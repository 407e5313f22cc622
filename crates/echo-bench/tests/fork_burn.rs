//! `echo-bench run` against a forking server whose children and
//! grandchildren burn a known amount of CPU (`test-servers`' `fork-burn`):
//! the reported server CPU must be that burn, within 5 %, and the peak
//! memory must not grow with the number of children sharing the parent's
//! pages.
//!
//! The children are reaped automatically (SIGCHLD ignored) and exit inside
//! the measured window: exactly what a `/proc` walk cannot see, and what a
//! cgroup charges. Where no cgroup can be made, the test says so and checks
//! the fallback's weaker claims instead; the fallback is checked in every
//! case, so both ways stay tested where cgroups exist.

mod common;

use std::process::Command;
use std::time::Duration;

use common::BENCH;

const DEADLINE: Duration = Duration::from_secs(120);
const CONNS: u64 = 8;
const CHILD_BURN_MS: u64 = 150;
const GRANDCHILD_BURN_MS: u64 = 100;
const SHARED_MIB: u64 = 64;

/// `echo-bench run --bin fork-burn …` with the given burns; the `server`
/// object of the JSON result, and stdout for messages.
fn run(measure: &str, child_ms: u64, grandchild_ms: u64) -> (serde_json::Value, String) {
    let json = std::env::temp_dir().join(format!(
        "fork-burn-{}-{measure}-{child_ms}.json",
        std::process::id()
    ));
    let mut cmd = Command::new(BENCH);
    cmd.arg("run")
        .arg("--bin")
        .arg(common::workspace_bin("test-servers", "fork-burn"))
        .args(["--measure", measure, "--repeat", "1"])
        .args([
            "--conns",
            &CONNS.to_string(),
            "--messages",
            &CONNS.to_string(),
        ])
        .arg("--json")
        .arg(&json)
        .args([
            "--",
            "--shared-mib",
            &SHARED_MIB.to_string(),
            "--child-burn-ms",
            &child_ms.to_string(),
            "--grandchild-burn-ms",
            &grandchild_ms.to_string(),
        ]);
    let out = common::bounded(cmd, DEADLINE);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "echo-bench run --measure {measure} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&json).expect("the JSON was written");
    let _ = std::fs::remove_file(&json);
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    (v["results"][0]["server"].clone(), stdout)
}

fn f(server: &serde_json::Value, key: &str) -> f64 {
    server[key]
        .as_f64()
        .unwrap_or_else(|| panic!("no number {key} in {server}"))
}

#[test]
fn server_cpu_is_the_known_burn_and_memory_is_not_counted_per_child() {
    let burn_s = (CONNS * (CHILD_BURN_MS + GRANDCHILD_BURN_MS)) as f64 / 1e3;
    let shared = (SHARED_MIB << 20) as f64;

    // What `auto` picks: a cgroup if this machine lets us make one.
    let (base, _) = run("auto", 0, 0);
    let (server, stdout) = run("auto", CHILD_BURN_MS, GRANDCHILD_BURN_MS);
    let measurement = server["measurement"].as_str().expect("measurement named");
    assert_eq!(base["measurement"], server["measurement"]);
    assert!(
        stdout.contains(&format!("measurement: {measurement}")),
        "{stdout}"
    );
    let exact = measurement.starts_with("cgroup");
    if exact {
        // The same run without burns costs the forks, the exits and the
        // echoes (tens of ms for 8 children of a 64 MiB parent): that is
        // not burn, so it is taken off rather than hidden in the bound.
        let overhead = f(&base, "cpu_total_s");
        let cpu = f(&server, "cpu_total_s") - overhead;
        eprintln!(
            "{measurement}: server CPU {:.4} s, of which {overhead:.4} s forks and echoes; \
             known burn {burn_s:.3} s; peak memory {:.1} MiB",
            f(&server, "cpu_total_s"),
            f(&server, "peak_memory_bytes") / (1 << 20) as f64
        );
        assert!(
            (cpu - burn_s).abs() <= 0.05 * burn_s,
            "{measurement}: {cpu:.4} s of CPU net of {overhead:.4} s overhead, \
             expected {burn_s:.3} s ± 5 %: {server}"
        );
        let peak = f(&server, "peak_memory_bytes");
        assert!(peak >= shared, "the shared pages are missing: {server}");
        assert!(
            peak < 2.0 * shared,
            "shared pages counted per child: {server}"
        );
    } else {
        eprintln!(
            "NO CGROUP on this machine ({measurement}): the exact CPU figure is not checked, \
             only the /proc fallback's weaker claims: {stdout}"
        );
        assert_eq!(measurement, "proc");
    }

    // The fallback, on every machine: it misses the auto-reaped children,
    // so its CPU is at most the truth (a lower bound); its PSS still counts
    // shared pages once.
    let (proc_server, _) = run("proc", CHILD_BURN_MS, GRANDCHILD_BURN_MS);
    assert_eq!(proc_server["measurement"], "proc");
    let cpu = f(&proc_server, "cpu_total_s");
    eprintln!(
        "proc fallback: server CPU {cpu:.4} s of a {burn_s:.3} s burn; peak PSS {:.1} MiB",
        f(&proc_server, "peak_memory_bytes") / (1 << 20) as f64
    );
    // The truth: the exact figure where there is one, else the burn plus
    // what the fallback itself saw of the run without burns.
    let truth = if exact {
        f(&server, "cpu_total_s")
    } else {
        burn_s + f(&base, "cpu_total_s")
    };
    assert!(
        cpu <= 1.05 * truth,
        "more than the {truth:.4} s used: {proc_server}"
    );
    let peak = f(&proc_server, "peak_memory_bytes");
    assert!(
        peak >= 0.9 * shared,
        "the shared pages are missing: {proc_server}"
    );
    assert!(
        peak < 2.0 * shared,
        "shared pages counted per child: {proc_server}"
    );
    assert!(
        proc_server["measurement_note"]
            .as_str()
            .is_some_and(|n| n.contains("misses auto-reaped")),
        "{proc_server}"
    );
}
