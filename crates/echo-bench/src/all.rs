//! `echo-bench all`: every built model through the scenarios, into a
//! results folder with hyperfine-schema JSON and a Markdown report.
//!
//! Each scenario × model is exactly what `run` does (fresh server per
//! repetition, pinned, measured the same way), so a figure in the report can be
//! reproduced alone with `echo-bench run`. Missing model binaries are built
//! with the cargo that launched us (one invocation, into our own target
//! directory and profile) or, without one, skipped with the command to run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::load::{LoadSpec, Stop};
use crate::report::{self, Row};
use crate::run::{self, MODELS, Pinning};
use crate::stats::UtcTime;

/// A fixed workload every model goes through.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Short name, used in the JSON parameters and the report.
    pub name: &'static str,
    /// Connections (with `reconnect`, slots each opening one after another).
    pub conns: usize,
    /// Bytes per message.
    pub size: usize,
    /// A new connection per message: what accepting and setting up a client
    /// costs (a fork, a thread, a queue slot), rather than what echoing does.
    pub reconnect: bool,
}

/// The scenarios, closed loop: one client (pure latency, no concurrency),
/// fifty (where the designs start to differ), a thousand (what every open
/// connection costs the server while it waits its turn) and fifty clients
/// each opening a new connection for every message (the price of a client
/// arriving).
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "conns-1",
        conns: 1,
        size: 64,
        reconnect: false,
    },
    Scenario {
        name: "conns-50",
        conns: 50,
        size: 64,
        reconnect: false,
    },
    Scenario {
        name: "conns-1000",
        conns: 1000,
        size: 64,
        reconnect: false,
    },
    Scenario {
        name: "reconnect-50",
        conns: 50,
        size: 64,
        reconnect: true,
    },
];

/// Options of `all`.
#[derive(Debug, Clone)]
pub struct AllOptions {
    /// Model ids to run (all known ones when empty).
    pub models: Vec<String>,
    /// Repetitions per scenario × model.
    pub repeat: usize,
    /// Messages per repetition.
    pub messages: u64,
    /// Parent of the timestamped results folder.
    pub out: PathBuf,
    /// How to measure the servers.
    pub measure: run::Measure,
}

/// Runs everything; `Ok(true)` iff every repetition was fully verified.
pub fn all(opts: &AllOptions) -> Result<bool, String> {
    let wanted: Vec<String> = if opts.models.is_empty() {
        MODELS.iter().map(|m| m.to_string()).collect()
    } else {
        opts.models.clone()
    };
    let models = available_models(&wanted)?;
    if models.is_empty() {
        return Err("no model binary is available to benchmark".into());
    }
    // Read before pinning: afterwards this process may use one CPU only.
    let usable_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pinning = run::pin_self();
    let (method, why) = run::choose_method(opts.measure)?;
    let measurement = run::describe_method(method, why.as_deref());
    eprintln!("{}", pinning.describe());
    eprintln!("{measurement}");

    let started = UtcTime::now();
    let dir = opts.out.join(started.stamp());
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;

    let steps = SCENARIOS.len() * models.len();
    let mut step = 0;
    let mut json = Vec::new();
    let mut tables = Vec::new();
    let mut all_ok = true;
    for sc in SCENARIOS {
        let mut rows = Vec::new();
        for (id, bin) in &models {
            step += 1;
            let spec = LoadSpec {
                addr: ([127, 0, 0, 1], 0).into(),
                conns: sc.conns,
                size: sc.size,
                stop: Stop::Messages(opts.messages),
                rate: None,
                threads: 1,
                reconnect: sc.reconnect,
                idle: 0,
            };
            let mut row = Row {
                model: id.clone(),
                reps: Vec::new(),
                failure: None,
            };
            for r in 1..=opts.repeat {
                match run::one_rep(bin, &[], &spec, &pinning, method) {
                    Ok(rep) => {
                        eprintln!(
                            "[{step}/{steps}] {id} {} rep {r}/{} … {:.0} msg/s{}",
                            sc.name,
                            opts.repeat,
                            rep.load.msgs_per_s(),
                            if rep.load.ok() {
                                String::new()
                            } else {
                                format!(", errors {}", rep.load.errors)
                            }
                        );
                        all_ok &= rep.load.ok();
                        row.reps.push(rep);
                    }
                    Err(e) => {
                        eprintln!(
                            "[{step}/{steps}] {id} {} rep {r}/{} … failed: {e}",
                            sc.name, opts.repeat
                        );
                        all_ok = false;
                        row.failure = Some(e);
                        break;
                    }
                }
            }
            let mut params = BTreeMap::new();
            params.insert("model".to_string(), id.clone());
            params.insert("scenario".to_string(), sc.name.to_string());
            params.insert("conns".to_string(), sc.conns.to_string());
            params.insert("size".to_string(), sc.size.to_string());
            params.insert("messages".to_string(), opts.messages.to_string());
            params.insert("loop".to_string(), "closed".to_string());
            if sc.reconnect {
                params.insert("reconnect".to_string(), "per message".to_string());
            }
            let command = format!(
                "echo-bench run {id} --conns {} --size {} --messages {} --repeat {}{}",
                sc.conns,
                sc.size,
                opts.messages,
                opts.repeat,
                if sc.reconnect { " --reconnect" } else { "" }
            );
            if let Some(j) = report::json_result(&command, params, &row.reps) {
                json.push(j);
            }
            rows.push(row);
        }
        tables.push((*sc, rows));
    }

    report::write_json(&dir.join("results.json"), json)?;
    let md = markdown(&started, &pinning, &measurement, usable_cpus, opts, &tables);
    let md_path = dir.join("report.md");
    std::fs::write(&md_path, md).map_err(|e| format!("cannot write {}: {e}", md_path.display()))?;
    println!("{}", dir.display());
    Ok(all_ok)
}

/// The binaries to use, building missing ones when cargo launched us.
fn available_models(wanted: &[String]) -> Result<Vec<(String, PathBuf)>, String> {
    let mut absent_crate = Vec::new();
    let mut unbuilt = Vec::new();
    for id in wanted {
        if run::binary(id)?.is_file() {
            continue;
        }
        if crate_dir(id).is_dir() {
            unbuilt.push(id.clone());
        } else {
            absent_crate.push(id.clone());
        }
    }
    if !absent_crate.is_empty() {
        eprintln!(
            "not yet built in this workspace: {}",
            absent_crate.join(", ")
        );
    }
    if !unbuilt.is_empty() {
        let mut args = build_args(&unbuilt)?;
        match std::env::var_os("CARGO") {
            Some(cargo) => {
                eprintln!("building: cargo {}", args.join(" "));
                let status = Command::new(cargo)
                    .args(&args)
                    .status()
                    .map_err(|e| format!("cannot run cargo: {e}"))?;
                if !status.success() {
                    eprintln!("the build failed ({status}); benchmarking what exists");
                }
            }
            None => {
                args.insert(0, "cargo".into());
                eprintln!(
                    "not built, skipped: {}; build them with:",
                    unbuilt.join(", ")
                );
                eprintln!("  {}", args.join(" "));
            }
        }
    }
    let mut out = Vec::new();
    for id in wanted {
        let bin = run::binary(id)?;
        if bin.is_file() {
            out.push((id.clone(), bin));
        }
    }
    Ok(out)
}

fn crate_dir(id: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(format!("echo-{id}"))
}

/// `build --release -p echo-a -p echo-b …`, aimed at the target directory
/// and profile we run from, so the binaries land next to us.
fn build_args(ids: &[String]) -> Result<Vec<String>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate echo-bench: {e}"))?;
    let profile_dir = exe.parent().ok_or("echo-bench has no parent directory")?;
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("release");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let mut args = vec!["build".to_string()];
    match profile {
        "release" => args.push("--release".into()),
        "debug" => {}
        other => args.extend(["--profile".to_string(), other.to_string()]),
    }
    for id in ids {
        args.extend(["-p".to_string(), format!("echo-{id}")]);
    }
    args.extend([
        "--manifest-path".to_string(),
        manifest.display().to_string(),
    ]);
    if let Some(target) = profile_dir.parent() {
        args.extend(["--target-dir".to_string(), target.display().to_string()]);
    }
    Ok(args)
}

fn markdown(
    started: &UtcTime,
    pinning: &Pinning,
    measurement: &str,
    usable_cpus: usize,
    opts: &AllOptions,
    tables: &[(Scenario, Vec<Row>)],
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# echo-bench results, {}\n", started.human());
    let _ = writeln!(md, "- command: `{}`", report::command_line());
    let _ = writeln!(md, "- CPU: {}", cpu_model());
    let _ = writeln!(
        md,
        "- cores: {} online, {usable_cpus} usable by this process",
        cpu_count()
    );
    let _ = writeln!(md, "- kernel: {}", kernel());
    let _ = writeln!(md, "- pinning: {}", pinning.describe());
    let _ = writeln!(
        md,
        "- workload: closed loop, {} messages per repetition, {} repetition(s), a fresh server each",
        opts.messages, opts.repeat
    );
    let _ = writeln!(md, "- {measurement}");
    let _ = writeln!(
        md,
        "- relative throughput is against the fastest row: compare ratios, the machine is noisy\n"
    );
    for (sc, rows) in tables {
        let what = if sc.reconnect {
            format!(
                "{} client(s), each opening a new connection for every {} B message \
                 (msgs/s is connections served per second)",
                sc.conns, sc.size
            )
        } else {
            format!("{} connection(s), {} B messages", sc.conns, sc.size)
        };
        let _ = writeln!(md, "## {}: {what}\n", sc.name);
        md.push_str(&report::markdown_table(rows));
        md.push('\n');
        let after = report::markdown_aftermath(rows);
        if !after.is_empty() {
            md.push_str(&after);
            md.push('\n');
        }
    }
    md
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_string())
            })
        })
        .unwrap_or_else(|| "unknown".into())
}

fn cpu_count() -> usize {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(0)
}

fn kernel() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}
