//! Syscalls per echo: each server once more, under `strace -f -c`, on a
//! short load of its own after the timed runs, its counts divided by the
//! echoes.
//!
//! Syscalls: fork/exec of `strace` (which ptraces the server and its
//! children), `kill(2)` with SIGINT to the traced server so that it drains
//! and exits and strace writes its table.
//!
//! strace stops the server at every call, so these runs are never mixed
//! with the timed ones: they count, they do not time. The counts include
//! the server's start and stop (a few dozen calls, a few hundred for a
//! Python interpreter), spread over [`MESSAGES`] echoes; the alternative,
//! a second run without load to subtract, doubles the cost to remove
//! what the per-echo figures already make small. `perf stat` on the
//! syscall tracepoints would not slow the server, but needs
//! privileges strace does not.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use echo_conformance::ServerProcess;
use echo_conformance::tree;
use serde::{Deserialize, Serialize};

use crate::all::Server;
use crate::load::{self, LoadSpec, Stop};

/// Echoes of the traced load: one connection, 64 B each.
pub const MESSAGES: u64 = 5000;

/// What the syscall runs gave.
pub enum Outcome {
    /// `--no-syscalls`.
    NotAsked,
    /// strace is not installed (the reason).
    NoTracer(String),
    /// Per server.
    Counted(Vec<Count>),
}

/// One server's counts, one line of `syscalls.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Count {
    /// Server id.
    pub server: String,
    /// Echoes of the traced load.
    pub messages: u64,
    /// Calls by name, over all the server's threads and processes.
    pub calls: BTreeMap<String, u64>,
    /// Failed calls by name (EAGAIN, mostly).
    pub errors: BTreeMap<String, u64>,
    /// Why there are no counts.
    pub failure: Option<String>,
}

impl Count {
    /// Calls per echo, most first.
    pub fn per_echo(&self) -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = self
            .calls
            .iter()
            .map(|(k, &n)| (k.clone(), n as f64 / self.messages.max(1) as f64))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }

    /// All calls per echo.
    pub fn total_per_echo(&self) -> f64 {
        self.calls.values().sum::<u64>() as f64 / self.messages.max(1) as f64
    }
}

/// Traces every server not yet traced in `dir` (`syscalls.jsonl` is
/// appended as each ends, so a resumed run does not trace again).
pub fn all(dir: &Path, servers: &[Server]) -> Outcome {
    let ok = Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let why = "strace is not installed: syscalls per echo not counted".to_string();
        eprintln!("{why}");
        return Outcome::NoTracer(why);
    }
    let path = dir.join("syscalls.jsonl");
    let mut counts: Vec<Count> = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for (i, s) in servers.iter().enumerate() {
        if counts.iter().any(|c| c.server == s.id) {
            continue;
        }
        eprintln!(
            "[syscalls {}/{}] {} under strace -f -c, {MESSAGES} echoes",
            i + 1,
            servers.len(),
            s.id
        );
        let c = match trace(s, &dir.join(format!("strace-{}.txt", s.id))) {
            Ok((calls, errors)) => Count {
                server: s.id.clone(),
                messages: MESSAGES,
                calls,
                errors,
                failure: None,
            },
            Err(e) => {
                eprintln!("  {}: {e}", s.id);
                Count {
                    server: s.id.clone(),
                    messages: MESSAGES,
                    calls: BTreeMap::new(),
                    errors: BTreeMap::new(),
                    failure: Some(e),
                }
            }
        };
        if let Ok(line) = serde_json::to_string(&c) {
            use std::io::Write as _;
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all((line + "\n").as_bytes()));
        }
        counts.push(c);
    }
    counts.sort_by_key(|c| servers.iter().position(|s| s.id == c.server));
    Outcome::Counted(counts)
}

type Table = (BTreeMap<String, u64>, BTreeMap<String, u64>);

fn trace(s: &Server, out: &Path) -> Result<Table, String> {
    let _ = std::fs::remove_file(out);
    let mut cmd = Command::new("strace");
    cmd.arg("-f")
        .arg("-c")
        .arg("-o")
        .arg(out)
        .arg(&s.bin)
        .args(["--addr", "127.0.0.1:0"])
        .args(&s.args);
    let server = ServerProcess::spawn_command(cmd)?;
    let spec = LoadSpec {
        addr: server.addr(),
        conns: 1,
        size: 64,
        stop: Stop::Messages(MESSAGES),
        rate: None,
        threads: 1,
        reconnect: false,
        idle: 0,
    };
    let result = load::run(&spec);
    // SIGINT to the traced server (strace's child), not to strace: the
    // server drains and exits, and strace then writes its table.
    let traced = tree::pids(server.pid()).get(1).copied();
    if let Some(pid) = traced {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGINT,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let table = loop {
        let text = std::fs::read_to_string(out).unwrap_or_default();
        if text.lines().any(|l| l.trim_end().ends_with("total")) || Instant::now() >= deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = server.stop();
    let load = result?;
    if !load.ok() {
        return Err(format!("the traced load had errors: {}", load.errors));
    }
    parse(&table)
}

/// Parses strace's `-c` table: `% time  seconds  usecs/call  calls
/// [errors]  syscall`, between dashed lines, ending with `total`.
pub fn parse(text: &str) -> Result<Table, String> {
    let mut calls = BTreeMap::new();
    let mut errors = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || f[0].parse::<f64>().is_err() {
            continue;
        }
        let name = f[f.len() - 1];
        if name == "total" {
            continue;
        }
        let n: u64 = f[3]
            .parse()
            .map_err(|_| format!("unreadable strace line: {line}"))?;
        calls.insert(name.to_string(), n);
        if f.len() == 6
            && let Ok(e) = f[4].parse::<u64>()
        {
            errors.insert(name.to_string(), e);
        }
    }
    if calls.is_empty() {
        return Err("strace wrote no table (did the server exit on SIGINT?)".into());
    }
    Ok((calls, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_strace_tables() {
        let t = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 52.10    0.010000           2      5001           sendto
 40.00    0.008000           1     10002      5000 recvfrom
  0.10    0.000020          20         1           bind
------ ----------- ----------- --------- --------- ----------------
100.00    0.018020           1     15004      5000 total
";
        let (calls, errors) = parse(t).unwrap();
        assert_eq!(calls["sendto"], 5001);
        assert_eq!(calls["recvfrom"], 10002);
        assert_eq!(calls.len(), 3);
        assert_eq!(errors["recvfrom"], 5000);
        assert!(!errors.contains_key("sendto"));
        let c = Count {
            server: "x".into(),
            messages: 5000,
            calls,
            errors,
            failure: None,
        };
        assert_eq!(c.per_echo()[0].0, "recvfrom");
        assert!((c.total_per_echo() - 15004.0 / 5000.0).abs() < 1e-9);
        assert!(parse("no table").is_err());
    }
}
