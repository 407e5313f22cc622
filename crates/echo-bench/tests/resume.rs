//! `echo-bench all` interrupted and continued with `--resume`: the rows
//! written before the interruption are kept as they were, none is run
//! twice, and the rerun completes the set. Real servers, a real SIGKILL.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BENCH: &str = env!("CARGO_BIN_EXE_echo-bench");

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn key(line: &str) -> (String, String, u64) {
    let v: serde_json::Value = serde_json::from_str(line).expect("a row is JSON");
    (
        v["server"].as_str().unwrap().to_string(),
        v["scenario"].as_str().unwrap().to_string(),
        v["rep"].as_u64().unwrap(),
    )
}

#[test]
fn an_interrupted_run_continues_without_repeating_rows() {
    let out: PathBuf =
        std::env::temp_dir().join(format!("echo-bench-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let mut child = Command::new(BENCH)
        .args([
            "all",
            "--models",
            "iterative,epoll",
            "--scenarios",
            "tiny",
            "--repeat",
            "3",
            "--no-syscalls",
            "--seed",
            "7",
            "--out",
        ])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Wait (bounded) for the run folder and its second row, then kill.
    let deadline = Instant::now() + Duration::from_secs(120);
    let dir = loop {
        let dir = std::fs::read_dir(&out)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.is_dir());
        if let Some(d) = &dir
            && lines(&d.join("rows.jsonl")).len() >= 2
        {
            break d.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no two rows within 120 s: {:?}",
            dir
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let killed = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    let before = lines(&dir.join("rows.jsonl"));
    assert!(
        (2..6).contains(&before.len()),
        "interrupted with {} of 6 rows",
        before.len()
    );
    assert!(
        !dir.join("results.json").exists(),
        "the killed run did not finish"
    );

    let status = Command::new(BENCH)
        .arg("all")
        .arg("--resume")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the resumed run failed: {status}");

    let after = lines(&dir.join("rows.jsonl"));
    assert_eq!(&after[..before.len()], &before[..], "earlier rows changed");
    assert_eq!(after.len(), 6, "2 servers × 3 repetitions, each once");
    let keys: BTreeSet<_> = after.iter().map(|l| key(l)).collect();
    assert_eq!(keys.len(), 6, "a row was repeated: {after:?}");
    for server in ["iterative", "epoll"] {
        for rep in 1..=3 {
            assert!(keys.contains(&(server.to_string(), "tiny".to_string(), rep)));
        }
    }

    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    let results = results["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        assert_eq!(r["times"].as_array().unwrap().len(), 3, "{r}");
        assert_eq!(r["memory_usage_byte"].as_array().unwrap().len(), 3);
        assert!(r["throughput_msgs_per_s"].as_f64().unwrap() > 0.0);
    }
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("continued with --resume"), "{report}");
    std::fs::remove_dir_all(&out).unwrap();
    remove_cgroups_of(killed);
}

/// The killed run could not remove the cgroup of the repetition it was in;
/// its server died with it (parent-death signal), so the groups are empty
/// by now and `rmdir` removes them. Best effort: a group still busy stays.
fn remove_cgroups_of(pid: u32) {
    let prefix = format!("echo-bench-{pid}-");
    let mut dirs = vec![(PathBuf::from("/sys/fs/cgroup"), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_dir(&path);
            } else if depth < 2 {
                dirs.push((path, depth + 1));
            }
        }
    }
}
