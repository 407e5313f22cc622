//! `echo-bench all`: every built model (and, with `--peers python`, the
//! seeds' Python servers) through the scenario matrix, into a results
//! folder that survives interruption.
//!
//! Syscalls: those of [`crate::run::one_rep`] (fork/exec, affinity, kill),
//! `write(2)` + `fsync(2)` of one journal line per finished repetition, and
//! a thread per repetition so that it can be given up at its timeout.
//!
//! Each cell (scenario × server) is exactly what `run` does: a fresh
//! server per repetition, pinned, measured the same way, so a figure in the
//! report can be reproduced alone with `echo-bench run`. The repetitions
//! are interleaved: round r runs repetition r of every cell, in an order
//! shuffled by a seeded generator (the seed is in `plan.json` and
//! `results.json`), so that a drift of the machine (another build
//! starting, the CPU warming) spreads over all servers instead of landing
//! on the one measured at that moment. The alternative, every repetition
//! of one server back to back, is what `run` does; it is faster to read
//! but turns drift into a difference between models.
//!
//! The folder holds `plan.json` (what to run, the seed), `rows.jsonl`
//! (one line per finished repetition, appended and synced as it ends) and,
//! at the end, `results.json`, `report.md` and the plots. `--resume DIR`
//! reads the plan and the rows back and runs only what is missing, in the
//! same order; a line torn by the interruption is dropped and rerun.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::matrix::{self, Limits, SCENARIOS, Scenario};
use crate::report;
use crate::run::{self, MODELS};
use crate::stats::UtcTime;

/// Options of `all`.
#[derive(Debug, Clone)]
pub struct AllOptions {
    /// Model ids to run (all built ones when empty).
    pub models: Vec<String>,
    /// Scenario names (the run's own set when empty).
    pub scenarios: Vec<String>,
    /// The whole matrix rather than the quick subset.
    pub full: bool,
    /// Repetitions per cell, overriding the run's default.
    pub repeat: Option<usize>,
    /// Add the seeds' Python servers.
    pub peers_python: bool,
    /// Seed of the shuffle (from the clock when `None`).
    pub seed: Option<u64>,
    /// Count syscalls per echo under strace after the timed runs.
    pub syscalls: bool,
    /// Parent of the timestamped results folder.
    pub out: PathBuf,
    /// Continue the run in this folder instead of starting one.
    pub resume: Option<PathBuf>,
    /// How to measure the servers.
    pub measure: run::Measure,
}

/// A server the run measures: a model, or a Python peer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Server {
    /// Model id, or `py-…` for a Python peer.
    pub id: String,
    /// Its executable.
    pub bin: PathBuf,
    /// Flags it is started with besides `--addr`.
    pub args: Vec<String>,
}

/// What a run is: written first, read back by `--resume`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// When it was started.
    pub started: String,
    /// The command line that started it.
    pub command: String,
    /// Quick or full.
    pub full: bool,
    /// Repetitions per cell.
    pub repeat: usize,
    /// Seed of the shuffle.
    pub seed: u64,
    /// The servers, in teaching order.
    pub servers: Vec<Server>,
    /// The scenario names, in matrix order.
    pub scenarios: Vec<String>,
    /// Servers asked for and not run, with the reason.
    pub absent: Vec<(String, String)>,
    /// Count syscalls per echo.
    pub syscalls: bool,
}

/// One finished repetition, one line of `rows.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RowLine {
    /// Server id.
    pub server: String,
    /// Scenario name.
    pub scenario: String,
    /// Repetition, from 1.
    pub rep: usize,
    /// Wall seconds the repetition took, server start to stop.
    pub wall_s: f64,
    /// hyperfine-schema result of this one repetition (`None` if it failed).
    pub result: Option<Value>,
    /// The latency histogram as (µs, count) pairs, to merge repetitions
    /// exactly rather than average their percentiles.
    pub histogram: Vec<(u64, u64)>,
    /// Why it has no result.
    pub failure: Option<String>,
}

/// One cell as it appears in the results: scenario × server.
pub struct Cell<'a> {
    /// The scenario.
    pub scenario: &'static Scenario,
    /// The server.
    pub server: &'a Server,
}

/// Runs (or continues) everything; `Ok(true)` iff every repetition ran and
/// every byte was verified.
pub fn all(opts: &AllOptions) -> Result<bool, String> {
    // Read before pinning: afterwards this process may use one CPU only.
    let usable_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let limits = Limits::read();
    let (dir, plan) = match &opts.resume {
        Some(dir) => {
            let plan = read_plan(dir)?;
            eprintln!(
                "resuming {} ({} run, seed {})",
                dir.display(),
                if plan.full { "full" } else { "quick" },
                plan.seed
            );
            (dir.clone(), plan)
        }
        None => {
            let plan = new_plan(opts)?;
            let dir = opts.out.join(UtcTime::now().stamp());
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let text = serde_json::to_string_pretty(&plan).map_err(|e| e.to_string())?;
            write_file(&dir.join("plan.json"), &(text + "\n"))?;
            (dir, plan)
        }
    };
    for (id, why) in &plan.absent {
        eprintln!("not run: {id}: {why}");
    }
    let pinning = run::pin_self();
    let (method, why) = run::choose_method(opts.measure)?;
    let measurement = run::describe_method(method, why.as_deref());
    eprintln!("{}", pinning.describe());
    eprintln!("{measurement}");

    let scenarios: Vec<&'static Scenario> = plan
        .scenarios
        .iter()
        .map(|n| Scenario::named(n).ok_or_else(|| format!("unknown scenario '{n}' in the plan")))
        .collect::<Result<_, _>>()?;
    let mut cells = Vec::new();
    let mut skipped = Vec::new();
    for sc in &scenarios {
        for server in &plan.servers {
            match limits.can_run(&server.id, sc) {
                Ok(()) => cells.push(Cell {
                    scenario: sc,
                    server,
                }),
                Err(why) => skipped.push((sc.name, server.id.clone(), why)),
            }
        }
    }
    let order = interleave(cells.len(), plan.repeat, plan.seed);

    let rows_path = dir.join("rows.jsonl");
    let mut rows = read_rows(&rows_path)?;
    let done: BTreeSet<(String, String, usize)> = rows
        .iter()
        .map(|r| (r.server.clone(), r.scenario.clone(), r.rep))
        .collect();
    if !rows.is_empty() {
        eprintln!("{} repetition(s) already done, not repeated", rows.len());
    }
    let mut journal = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&rows_path)
        .map_err(|e| format!("cannot open {}: {e}", rows_path.display()))?;

    let todo: Vec<(usize, usize)> = order
        .into_iter()
        .filter(|&(c, r)| {
            let cell = &cells[c];
            !done.contains(&(cell.server.id.clone(), cell.scenario.name.to_string(), r))
        })
        .collect();
    let mut progress = Progress::new(
        todo.iter()
            .map(|&(c, _)| cells[c].scenario.duration(plan.full))
            .collect(),
    );
    let mut all_ok = rows.iter().all(row_ok);
    let measured = Instant::now();
    for (step, &(c, r)) in todo.iter().enumerate() {
        let cell = &cells[c];
        let sc = cell.scenario;
        let key = (cell.server.id.as_str(), sc.name);
        // A cell whose repetition failed is not run again: a server that
        // did not start, or hung past the timeout, would cost that again.
        let earlier = rows
            .iter()
            .find(|x| (x.server.as_str(), x.scenario.as_str()) == key && x.failure.is_some());
        let started = Instant::now();
        let row = match earlier {
            Some(e) => RowLine {
                server: cell.server.id.clone(),
                scenario: sc.name.into(),
                rep: r,
                wall_s: 0.0,
                result: None,
                histogram: Vec::new(),
                failure: Some(format!("not run: repetition {} failed", e.rep)),
            },
            None => {
                progress.show(
                    step,
                    &format!("{} {} rep {r}/{}", sc.name, cell.server.id, plan.repeat),
                );
                run_rep(cell, r, &plan, &pinning, method)
            }
        };
        let wall = started.elapsed();
        all_ok &= row_ok(&row);
        let line = serde_json::to_string(&row).map_err(|e| e.to_string())? + "\n";
        journal
            .write_all(line.as_bytes())
            .and_then(|_| journal.sync_data())
            .map_err(|e| format!("cannot append to {}: {e}", rows_path.display()))?;
        progress.done(step, wall, &row);
        rows.push(row);
    }
    progress.finish();
    let measured = measured.elapsed();

    let syscalls = if plan.syscalls {
        crate::syscalls::all(&dir, &plan.servers)
    } else {
        crate::syscalls::Outcome::NotAsked
    };

    let run_info = crate::results::RunInfo {
        plan: &plan,
        pinning: pinning.describe(),
        measurement,
        usable_cpus,
        measured_this_session: measured,
        resumed: opts.resume.is_some(),
    };
    crate::results::write_all(&dir, &run_info, &scenarios, &skipped, &rows, &syscalls)?;
    println!("{}", dir.display());
    Ok(all_ok)
}

fn row_ok(r: &RowLine) -> bool {
    r.failure.is_none()
        && r.result.as_ref().is_some_and(|v| {
            v["exit_codes"]
                .as_array()
                .is_some_and(|c| c.iter().all(|x| x.as_i64() == Some(0)))
        })
}

/// One repetition on a thread of its own, given up after the scenario's
/// timeout. The load stops itself (by duration, and its watchdog past
/// that); the timeout catches what it does not cover, such as ten thousand
/// connections that never finish opening. A thread given up keeps running
/// until the load's watchdog ends it; its server dies with that thread
/// (it was spawned with a parent-death signal).
fn run_rep(
    cell: &Cell,
    rep: usize,
    plan: &Plan,
    pinning: &run::Pinning,
    method: crate::proc::Method,
) -> RowLine {
    let sc = cell.scenario;
    let spec = sc.spec(plan.full);
    let (tx, rx) = mpsc::channel();
    let bin = cell.server.bin.clone();
    let args = cell.server.args.clone();
    let pin = pinning.clone();
    let started = Instant::now();
    let spawned = std::thread::Builder::new()
        .name("rep".into())
        .spawn(move || {
            let _ = tx.send(run::one_rep(&bin, &args, &spec, &pin, method));
        });
    let outcome = match spawned {
        Err(e) => Err(format!("cannot start a thread: {e}")),
        Ok(_) => match rx.recv_timeout(sc.timeout(plan.full)) {
            Ok(r) => r,
            Err(_) => Err(format!(
                "timed out after {:.0} s",
                sc.timeout(plan.full).as_secs_f64()
            )),
        },
    };
    let wall_s = started.elapsed().as_secs_f64();
    let mut row = RowLine {
        server: cell.server.id.clone(),
        scenario: sc.name.into(),
        rep,
        wall_s,
        result: None,
        histogram: Vec::new(),
        failure: None,
    };
    match outcome {
        Err(e) => row.failure = Some(e),
        Ok(rep_result) => {
            let params = parameters(cell, plan.full);
            let command = command_of(cell, plan.full);
            row.histogram = rep_result
                .load
                .latency
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect();
            match report::json_result(&command, params, std::slice::from_ref(&rep_result))
                .map(|j| serde_json::to_value(&j))
            {
                Some(Ok(v)) => row.result = Some(v),
                Some(Err(e)) => row.failure = Some(format!("cannot encode the result: {e}")),
                None => row.failure = Some("no result".into()),
            }
        }
    }
    row
}

/// The JSON parameters of a cell.
pub fn parameters(cell: &Cell, full: bool) -> BTreeMap<String, String> {
    let sc = cell.scenario;
    let mut p = BTreeMap::new();
    p.insert("model".to_string(), cell.server.id.clone());
    p.insert("scenario".to_string(), sc.name.to_string());
    p.insert("conns".to_string(), sc.conns.to_string());
    p.insert("size".to_string(), sc.size.to_string());
    p.insert(
        "duration".to_string(),
        sc.duration(full).as_secs_f64().to_string(),
    );
    match sc.rate {
        Some(r) => {
            p.insert("loop".to_string(), "open".to_string());
            p.insert("rate".to_string(), r.to_string());
        }
        None => {
            p.insert("loop".to_string(), "closed".to_string());
        }
    }
    if sc.reconnect {
        p.insert("reconnect".to_string(), "per message".to_string());
    }
    if sc.idle > 0 {
        p.insert("idle".to_string(), sc.idle.to_string());
    }
    p
}

/// The `echo-bench run` command that reproduces one cell alone.
pub fn command_of(cell: &Cell, full: bool) -> String {
    let sc = cell.scenario;
    let mut c = if cell.server.id.starts_with("py-") {
        format!("echo-bench run --bin {}", cell.server.bin.display())
    } else {
        format!("echo-bench run {}", cell.server.id)
    };
    c += &format!(
        " --conns {} --size {} --duration {}",
        sc.conns,
        sc.size,
        sc.duration(full).as_secs_f64()
    );
    if let Some(r) = sc.rate {
        c += &format!(" --rate {r}");
    }
    if sc.reconnect {
        c += " --reconnect";
    }
    if sc.idle > 0 {
        c += &format!(" --idle {}", sc.idle);
    }
    if !cell.server.args.is_empty() {
        c += &format!(" -- {}", cell.server.args.join(" "));
    }
    c
}

/// (cell, repetition) in run order: round by round, each round a fresh
/// shuffle of every cell.
pub fn interleave(cells: usize, repeat: usize, seed: u64) -> Vec<(usize, usize)> {
    let mut rng = SplitMix(seed);
    let mut out = Vec::with_capacity(cells * repeat);
    for r in 1..=repeat {
        let mut round: Vec<usize> = (0..cells).collect();
        // Fisher–Yates.
        for i in (1..round.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            round.swap(i, j);
        }
        out.extend(round.into_iter().map(|c| (c, r)));
    }
    out
}

/// SplitMix64: a few lines, reproducible from its seed on any machine,
/// which is all a shuffle needs (a random-number crate would be a
/// dependency for eight lines).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn new_plan(opts: &AllOptions) -> Result<Plan, String> {
    let wanted: Vec<String> = if opts.models.is_empty() {
        MODELS.iter().map(|m| m.to_string()).collect()
    } else {
        opts.models.clone()
    };
    let (mut servers, mut absent) = available_models(&wanted)?;
    if opts.peers_python {
        let (py, why) = python_peers();
        servers.extend(py);
        absent.extend(why);
    }
    if servers.is_empty() {
        return Err("no model binary is available to benchmark".into());
    }
    let scenarios: Vec<String> = if opts.scenarios.is_empty() {
        SCENARIOS
            .iter()
            .filter(|s| s.in_run(opts.full))
            .map(|s| s.name.to_string())
            .collect()
    } else {
        for n in &opts.scenarios {
            if Scenario::named(n).is_none() {
                return Err(format!("unknown scenario '{n}' (see --help)"));
            }
        }
        // Matrix order, whatever order they were named in.
        SCENARIOS
            .iter()
            .filter(|s| opts.scenarios.iter().any(|n| n == s.name))
            .map(|s| s.name.to_string())
            .collect()
    };
    let seed = opts.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    Ok(Plan {
        started: UtcTime::now().human(),
        command: report::command_line(),
        full: opts.full,
        repeat: opts.repeat.unwrap_or(if opts.full {
            matrix::FULL_REPEAT
        } else {
            matrix::QUICK_REPEAT
        }),
        seed,
        servers,
        scenarios,
        absent,
        syscalls: opts.syscalls,
    })
}

fn read_plan(dir: &Path) -> Result<Plan, String> {
    let path = dir.join("plan.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read {}: {e} (is it a folder made by `echo-bench all`?)",
            path.display()
        )
    })?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not a plan: {e}", path.display()))
}

/// The finished rows; a last line torn by the interruption is cut off the
/// file, so that the rerun appends after the last whole line.
fn read_rows(path: &Path) -> Result<Vec<RowLine>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut rows = Vec::new();
    let mut good = 0;
    for line in text.split_inclusive('\n') {
        if !line.ends_with('\n') {
            break;
        }
        match serde_json::from_str::<RowLine>(line) {
            Ok(r) => {
                rows.push(r);
                good += line.len();
            }
            Err(_) => break,
        }
    }
    if good < text.len() {
        eprintln!(
            "{}: dropping {} byte(s) after the last whole row (cut by the interruption)",
            path.display(),
            text.len() - good
        );
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        f.set_len(good as u64)
            .map_err(|e| format!("cannot truncate {}: {e}", path.display()))?;
    }
    Ok(rows)
}

fn write_file(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The step line on stderr with an estimate of the time left: on a
/// terminal one line rewritten in place, elsewhere (a log, CI) a plain line
/// per step.
struct Progress {
    durations: Vec<Duration>,
    /// Wall time beyond the sending time, over the repetitions so far:
    /// start, connect, drain and stop, which the estimate must include.
    overhead: Vec<f64>,
    tty: bool,
    started: Instant,
}

impl Progress {
    fn new(durations: Vec<Duration>) -> Progress {
        Progress {
            durations,
            overhead: Vec::new(),
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
        }
    }

    fn eta(&self, from: usize) -> Duration {
        // Before any repetition has finished: half a second each, about
        // what a fresh server and its connections take here.
        let over = if self.overhead.is_empty() {
            0.5
        } else {
            self.overhead.iter().sum::<f64>() / self.overhead.len() as f64
        };
        let left: f64 = self.durations[from.min(self.durations.len())..]
            .iter()
            .map(|d| d.as_secs_f64() + over)
            .sum();
        Duration::from_secs_f64(left.max(0.0))
    }

    fn line(&self, step: usize, what: &str) -> String {
        let eta = self.eta(step).as_secs();
        format!(
            "[{}/{}] {what} (elapsed {}, about {}:{:02} left)",
            step + 1,
            self.durations.len(),
            mmss(self.started.elapsed().as_secs()),
            eta / 60,
            eta % 60
        )
    }

    fn show(&self, step: usize, what: &str) {
        if self.tty {
            eprint!("\r\x1b[K{}", self.line(step, what));
        }
    }

    fn done(&mut self, step: usize, wall: Duration, row: &RowLine) {
        if let Some(d) = self.durations.get(step)
            && row.result.is_some()
        {
            self.overhead
                .push((wall.as_secs_f64() - d.as_secs_f64()).max(0.0));
        }
        let what = match (&row.result, &row.failure) {
            (Some(v), _) => {
                let tput = v["throughput_msgs_per_s"].as_f64().unwrap_or(0.0);
                let bad = !row_ok(row);
                format!(
                    "{} {} rep {} … {tput:.0} msg/s{}",
                    row.scenario,
                    row.server,
                    row.rep,
                    if bad { ", with errors" } else { "" }
                )
            }
            (None, Some(f)) => format!("{} {} rep {} … {f}", row.scenario, row.server, row.rep),
            (None, None) => format!("{} {} rep {}", row.scenario, row.server, row.rep),
        };
        let line = self.line(step, &what);
        if self.tty {
            eprint!("\r\x1b[K{line}");
            if row.failure.is_some() {
                eprintln!();
            }
        } else {
            eprintln!("{line}");
        }
    }

    fn finish(&self) {
        if self.tty {
            eprintln!();
        }
        eprintln!(
            "measured {} repetition(s) in {}",
            self.durations.len(),
            mmss(self.started.elapsed().as_secs())
        );
    }
}

fn mmss(s: u64) -> String {
    format!("{}:{:02}", s / 60, s % 60)
}

/// Servers asked for and not run: (id, why).
type Absent = Vec<(String, String)>;

/// The seeds' Python servers under `twins/`, or why each is absent.
fn python_peers() -> (Vec<Server>, Absent) {
    let twins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../twins");
    let peers: [(&str, &str, &[&str]); 5] = [
        (
            "py-threading",
            "socketserver_echo.py",
            &["--mode", "threading"],
        ),
        ("py-forking", "socketserver_echo.py", &["--mode", "forking"]),
        ("py-select", "select_echo.py", &[]),
        ("py-selectors", "selectors_echo.py", &[]),
        ("py-asyncio", "asyncio_echo.py", &[]),
    ];
    let python = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut servers = Vec::new();
    let mut absent = Vec::new();
    for (id, file, args) in peers {
        let bin = twins.join(file);
        if !python {
            absent.push((id.to_string(), "python3 is not installed".to_string()));
        } else if !bin.is_file() {
            absent.push((
                id.to_string(),
                format!("twins/{file} is not in this checkout"),
            ));
        } else {
            let bin = bin.canonicalize().unwrap_or(bin);
            servers.push(Server {
                id: id.to_string(),
                bin,
                args: args.iter().map(|a| a.to_string()).collect(),
            });
        }
    }
    (servers, absent)
}

/// The binaries to use, building missing ones when cargo launched us.
fn available_models(wanted: &[String]) -> Result<(Vec<Server>, Absent), String> {
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
    let mut absent: Vec<(String, String)> = absent_crate
        .iter()
        .map(|id| (id.clone(), "not yet in this workspace".to_string()))
        .collect();
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
            out.push(Server {
                id: id.clone(),
                bin,
                args: Vec::new(),
            });
        } else if !absent_crate.contains(id) {
            absent.push((id.clone(), "not built".to_string()));
        }
    }
    Ok((out, absent))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaving_runs_every_cell_once_per_round_in_a_seeded_order() {
        let a = interleave(5, 3, 42);
        assert_eq!(a, interleave(5, 3, 42), "same seed, same order");
        assert_ne!(a, interleave(5, 3, 43), "another seed, another order");
        assert_eq!(a.len(), 15);
        for r in 1..=3 {
            let mut round: Vec<usize> = a.iter().filter(|x| x.1 == r).map(|x| x.0).collect();
            round.sort_unstable();
            assert_eq!(round, vec![0, 1, 2, 3, 4]);
        }
        // Rounds are in order: repetition r of every cell before r + 1.
        assert!(a.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    #[test]
    fn a_torn_last_row_is_cut_off() {
        let dir = std::env::temp_dir().join(format!("echo-bench-rows-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rows.jsonl");
        let row = RowLine {
            server: "epoll".into(),
            scenario: "tiny".into(),
            rep: 1,
            wall_s: 0.5,
            result: None,
            histogram: vec![(10, 2)],
            failure: Some("x".into()),
        };
        let whole = serde_json::to_string(&row).unwrap() + "\n";
        std::fs::write(&path, format!("{whole}{}", &whole[..20])).unwrap();
        let rows = read_rows(&path).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), whole);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
