//! The results folder of `echo-bench all`, rebuilt from its rows:
//! `results.json` (hyperfine's schema, one result per cell), the SVG plots
//! and `report.md` with the tables, the skipped cells, the syscalls per
//! echo and the seed claims' figures. No syscalls beyond file writes.
//!
//! Everything here reads the journal's rows, never the live repetitions,
//! so that a resumed run reports the rows of every session alike. A cell's
//! repetitions are merged field by field over the JSON: lists are joined
//! (`times`, `exit_codes`, `memory_usage_byte`), peaks take the largest,
//! other numbers the mean, flags any, and the latency percentiles come from
//! the merged histograms. Merging the JSON rather than typed structs keeps
//! fields added to a result later in the merged output without a change
//! here.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::all::{Plan, RowLine, Server};
use crate::matrix::{SWEEP, Scenario};
use crate::plot;
use crate::stats::{self, Percentiles, summarize};
use crate::syscalls::Outcome;

/// What the report says about the run itself.
pub struct RunInfo<'a> {
    /// The plan.
    pub plan: &'a Plan,
    /// Pinning, one line.
    pub pinning: String,
    /// Measurement method, one line.
    pub measurement: String,
    /// CPUs this process could use before pinning.
    pub usable_cpus: usize,
    /// Wall time of this session's timed repetitions.
    pub measured_this_session: Duration,
    /// Whether this session continued an earlier one.
    pub resumed: bool,
}

/// One cell's merged figures.
struct Merged {
    scenario: &'static Scenario,
    server: String,
    /// The merged hyperfine result (`None`: no repetition finished).
    json: Option<Value>,
    /// Throughput per repetition, for the spread.
    tput: Vec<f64>,
    failures: Vec<String>,
    /// Wall seconds of all its repetitions, server start to stop.
    wall_s: f64,
}

impl Merged {
    fn f(&self, path: &[&str]) -> Option<f64> {
        let mut v = self.json.as_ref()?;
        for k in path {
            v = v.get(*k)?;
        }
        v.as_f64()
    }

    fn throughput(&self) -> Option<f64> {
        self.f(&["throughput_msgs_per_s"])
    }

    fn cpu_per_echo(&self) -> Option<f64> {
        self.f(&["server", "cpu_us_per_echo"])
    }

    /// Server CPU as a share of one core over the window.
    fn cpu_share(&self) -> Option<f64> {
        Some(self.f(&["server", "cpu_total_s"])? / self.f(&["mean"])?.max(1e-9))
    }

    fn p(&self, which: &str) -> Option<f64> {
        self.f(&["latency_us", which])
    }

    fn mem_mib(&self) -> Option<f64> {
        Some(self.f(&["server", "peak_memory_bytes"])? / (1u64 << 20) as f64)
    }
}

/// Writes `results.json`, the plots and `report.md` into `dir`.
pub fn write_all(
    dir: &Path,
    info: &RunInfo,
    scenarios: &[&'static Scenario],
    skipped: &[(&str, String, String)],
    rows: &[RowLine],
    syscalls: &Outcome,
) -> Result<(), String> {
    let plan = info.plan;
    let mut cells = Vec::new();
    for sc in scenarios {
        for s in &plan.servers {
            let mine: Vec<&RowLine> = rows
                .iter()
                .filter(|r| r.scenario == sc.name && r.server == s.id)
                .collect();
            if mine.is_empty() {
                continue;
            }
            cells.push(merge_cell(sc, &s.id, &mine));
        }
    }
    let results: Vec<Value> = cells.iter().filter_map(|c| c.json.clone()).collect();
    let export = json!({
        "results": results,
        "seed": plan.seed,
        "run": if plan.full { "full" } else { "quick" },
        "skipped": skipped.iter().map(|(sc, id, why)| json!({"scenario": sc, "model": id, "reason": why})).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&export).map_err(|e| e.to_string())?;
    write(&dir.join("results.json"), &(text + "\n"))?;
    let plots = plots(dir, &cells, &plan.servers);
    let md = markdown(info, scenarios, skipped, &cells, syscalls, &plots);
    write(&dir.join("report.md"), &md)
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn merge_cell(sc: &'static Scenario, server: &str, rows: &[&RowLine]) -> Merged {
    let ok: Vec<&RowLine> = rows
        .iter()
        .copied()
        .filter(|r| r.result.is_some())
        .collect();
    let failures = rows.iter().filter_map(|r| r.failure.clone()).collect();
    let tput = ok
        .iter()
        .filter_map(|r| r.result.as_ref()?["throughput_msgs_per_s"].as_f64())
        .collect();
    let json = if ok.is_empty() {
        None
    } else {
        let vals: Vec<&Value> = ok.iter().filter_map(|r| r.result.as_ref()).collect();
        let mut m = merge("", &vals);
        // The hyperfine statistics, from all the times together.
        let times: Vec<f64> = m["times"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        if let Some(t) = summarize(&times) {
            m["mean"] = json!(t.mean);
            m["stddev"] = json!(t.stddev);
            m["median"] = json!(t.median);
            m["min"] = json!(t.min);
            m["max"] = json!(t.max);
        }
        let mut h = stats::new_histogram();
        for r in &ok {
            for &(v, n) in &r.histogram {
                let _ = h.record_n(v, n);
            }
        }
        if let Ok(p) = serde_json::to_value(Percentiles::of(&h)) {
            m["latency_us"] = p;
        }
        Some(m)
    };
    Merged {
        scenario: sc,
        server: server.to_string(),
        json,
        tput,
        failures,
        wall_s: rows.iter().map(|r| r.wall_s).sum(),
    }
}

/// Peaks: the largest over the repetitions.
const PEAKS: &[&str] = &[
    "max",
    "peak_memory_bytes",
    "threads",
    "processes",
    "zombies_after",
    "left_behind",
];

fn merge(key: &str, vals: &[&Value]) -> Value {
    let present: Vec<&Value> = vals.iter().copied().filter(|v| !v.is_null()).collect();
    let Some(first) = present.first() else {
        return Value::Null;
    };
    match first {
        Value::Object(_) => {
            let mut out = Map::new();
            for v in &present {
                if let Value::Object(o) = v {
                    for k in o.keys() {
                        if !out.contains_key(k) {
                            let sub: Vec<&Value> =
                                present.iter().filter_map(|x| x.get(k)).collect();
                            out.insert(k.clone(), merge(k, &sub));
                        }
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(_) => Value::Array(
            present
                .iter()
                .filter_map(|v| v.as_array())
                .flatten()
                .cloned()
                .collect(),
        ),
        Value::Number(_) => {
            let nums: Vec<f64> = present.iter().filter_map(|v| v.as_f64()).collect();
            let all_int = present.iter().all(|v| v.is_u64());
            let x = if PEAKS.contains(&key) {
                nums.iter().copied().fold(f64::MIN, f64::max)
            } else if key == "min" {
                nums.iter().copied().fold(f64::MAX, f64::min)
            } else {
                stats::mean(&nums)
            };
            if all_int && PEAKS.contains(&key) {
                json!(x as u64)
            } else {
                json!(x)
            }
        }
        Value::Bool(_) => Value::Bool(present.iter().any(|v| v.as_bool() == Some(true))),
        _ => (*first).clone(),
    }
}

/// The plot files made, with what each shows.
struct Plots(Vec<(String, String)>);

fn plots(dir: &Path, cells: &[Merged], servers: &[Server]) -> Plots {
    let mut made = Vec::new();
    let sweep = |f: &dyn Fn(&Merged) -> Option<f64>| -> Vec<plot::Series> {
        servers
            .iter()
            .filter_map(|s| {
                let points: Vec<(f64, f64)> = SWEEP
                    .iter()
                    .filter_map(|n| {
                        let c = cells
                            .iter()
                            .find(|c| c.scenario.name == *n && c.server == s.id)?;
                        Some((c.scenario.conns as f64, f(c)?))
                    })
                    .collect();
                (!points.is_empty()).then(|| plot::Series {
                    label: s.id.clone(),
                    points,
                })
            })
            .collect()
    };
    let mut line = |file: &str, title: &str, y: &str, series: Vec<plot::Series>, caption: &str| {
        if series.is_empty() {
            return;
        }
        let chart = plot::LineChart {
            title,
            x_label: "connections",
            y_label: y,
            log_x: true,
            log_y: true,
            series: &series,
            caption,
        };
        match plot::line_chart(&dir.join(file), &chart) {
            Ok(()) => made.push((file.to_string(), title.to_string())),
            Err(e) => eprintln!("plot {file}: {e}"),
        }
    };
    line(
        "throughput.svg",
        "Throughput against connections",
        "echoes per second",
        sweep(&|c| c.throughput()),
        "64 B messages, closed loop; a line ends where the design is skipped",
    );
    line(
        "p99.svg",
        "p99 latency against connections",
        "p99 latency (µs)",
        sweep(&|c| c.p("p99")),
        "closed loop: with more connections, each waits for the others' turns",
    );
    line(
        "memory.svg",
        "Server peak memory against connections",
        "MiB",
        sweep(&|c| c.mem_mib()),
        "what each open connection costs: a process, a thread stack, or a few buffers",
    );
    let mut groups = Vec::new();
    let mut seen = Vec::new();
    for c in cells {
        if c.scenario.rate.is_some() && c.scenario.conns == 1 {
            continue; // idle: CPU per echo of one echo a second says nothing
        }
        if !seen.contains(&c.scenario.name) {
            seen.push(c.scenario.name);
        }
    }
    for name in seen {
        let bars = cells
            .iter()
            .filter(|c| c.scenario.name == name)
            .filter_map(|c| Some((c.server.clone(), c.cpu_per_echo()?)))
            .collect::<Vec<_>>();
        if !bars.is_empty() {
            groups.push(plot::BarGroup {
                label: name.to_string(),
                bars,
            });
        }
    }
    if !groups.is_empty() {
        let chart = plot::BarChart {
            title: "Server CPU per echo, per scenario",
            y_label: "µs of server CPU per echo",
            log_y: true,
            groups: &groups,
            caption: "user + system CPU of the whole server tree over the window, per verified echo",
        };
        match plot::bar_chart(&dir.join("cpu-per-echo.svg"), &chart) {
            Ok(()) => made.push(("cpu-per-echo.svg".into(), chart.title.into())),
            Err(e) => eprintln!("plot cpu-per-echo.svg: {e}"),
        }
    }
    let idle: Vec<(String, f64)> = cells
        .iter()
        .filter(|c| c.scenario.name == "idle-100")
        .filter_map(|c| Some((c.server.clone(), 100.0 * c.cpu_share()?)))
        .collect();
    if !idle.is_empty() {
        let groups = [plot::BarGroup {
            label: "idle-100".into(),
            bars: idle,
        }];
        let chart = plot::BarChart {
            title: "Server CPU while (almost) idle",
            y_label: "% of one core",
            log_y: false,
            groups: &groups,
            caption: "100 connections, ten messages a second: what the server spends waiting",
        };
        match plot::bar_chart(&dir.join("idle-cpu.svg"), &chart) {
            Ok(()) => made.push(("idle-cpu.svg".into(), chart.title.into())),
            Err(e) => eprintln!("plot idle-cpu.svg: {e}"),
        }
    }
    Plots(made)
}

fn markdown(
    info: &RunInfo,
    scenarios: &[&'static Scenario],
    skipped: &[(&str, String, String)],
    cells: &[Merged],
    syscalls: &Outcome,
    plots: &Plots,
) -> String {
    let plan = info.plan;
    let mut md = String::new();
    let _ = writeln!(md, "# echo-bench results, {}\n", plan.started);
    let _ = writeln!(md, "- command: `{}`", plan.command);
    let _ = writeln!(
        md,
        "- run: {}, {} repetition(s) per cell, interleaved in an order shuffled with seed {}{}",
        if plan.full { "full" } else { "quick" },
        plan.repeat,
        plan.seed,
        if info.resumed {
            " (continued with --resume: rows of earlier sessions kept)"
        } else {
            ""
        }
    );
    let _ = writeln!(md, "- CPU: {}", cpu_model());
    let _ = writeln!(
        md,
        "- cores: {} online, {} usable by this process",
        cpu_count(),
        info.usable_cpus
    );
    let _ = writeln!(md, "- kernel: {}", kernel());
    let _ = writeln!(md, "- pinning: {}", info.pinning);
    let _ = writeln!(md, "- {}", info.measurement);
    let _ = writeln!(
        md,
        "- the timed repetitions took {:.0} s of wall time in all ({:.0} s in this session)",
        cells.iter().map(|c| c.wall_s).sum::<f64>(),
        info.measured_this_session.as_secs_f64()
    );
    for (id, why) in &plan.absent {
        let _ = writeln!(md, "- not run: {id}: {why}");
    }
    md.push_str(
        "\n## How to read this\n\n\
         Each cell is one scenario against one server, a fresh server per repetition, \
         pinned to CPU 0 with the load on CPU 1. *msgs/s* counts verified echoes; \
         *relative* is against the fastest row of the table. *CPU µs/echo* is the \
         server tree's user + system CPU over the window divided by the echoes: the \
         cost of the design, whatever the load. *CPU %* is the same CPU as a share of \
         one core. Latency runs from the first byte sent to the last byte echoed. \
         *client CPU µs/msg* is what the load generator spent per message, beside the \
         server's cost; *send lag p99* (open loop only, the mean of the repetitions' p99) \
         is how late the client sent against its schedule. A client-bound row (load \
         threads saturated, or p99 send lag over the stated bound) partly measured the \
         load generator: its latency includes the client's lag. In a closed loop \
         against a fast server both sides run flat out, one CPU each, so the flag is \
         expected there: throughput is then capped by the client as much as by the \
         server, and *CPU µs/echo*, which does not depend on it, is the figure to \
         compare. The machine \
         is shared and noisy: compare ratios within this run, not with another \
         machine's figures; the repetitions are interleaved so that drift spreads \
         over every server.\n\n",
    );
    for (file, title) in &plots.0 {
        let _ = writeln!(md, "![{title}]({file})\n");
    }
    for sc in scenarios {
        let _ = writeln!(md, "## {}: {}\n", sc.name, sc.what);
        md.push_str(&table(sc, cells, skipped));
        md.push('\n');
    }
    md.push_str("## Skipped cells\n\n");
    if skipped.is_empty() {
        md.push_str("None: every server ran every scenario of this run.\n\n");
    } else {
        md.push_str("| scenario | server | why |\n|---|---|---|\n");
        for (sc, id, why) in skipped {
            let _ = writeln!(md, "| {sc} | {id} | {} |", why.replace('|', "/"));
        }
        md.push('\n');
    }
    md.push_str(&syscall_section(syscalls));
    md.push_str(&crate::claims::section(&ClaimData { cells }));
    md
}

fn table(sc: &Scenario, cells: &[Merged], skipped: &[(&str, String, String)]) -> String {
    let mut out = String::from(
        "| server | msgs/s (mean ± sd) | relative | p50 µs | p99 µs | max µs | CPU µs/echo \
         | CPU % | ctx vol / invol | peak MiB | threads | procs | left after \
         | client CPU µs/msg | send lag p99 µs | client-bound |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|\n",
    );
    let mine: Vec<&Merged> = cells
        .iter()
        .filter(|c| c.scenario.name == sc.name)
        .collect();
    let best = mine
        .iter()
        .filter_map(|c| c.throughput())
        .fold(0.0f64, f64::max);
    for c in &mine {
        let Some(tp) = c.throughput() else {
            let why = c.failures.first().map_or("no result", String::as_str);
            let _ = writeln!(
                out,
                "| {} | failed: {} |||||||||||||||",
                c.server,
                why.replace('|', "/")
            );
            continue;
        };
        let sd = summarize(&c.tput).and_then(|s| s.stddev).unwrap_or(0.0);
        let j = c.json.as_ref().expect("throughput implies a result");
        let errs = j["exit_codes"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|x| x.as_i64() != Some(0)).count());
        let mut name = c.server.clone();
        if errs > 0 {
            name += &format!(" ({errs} rep(s) with errors)");
        }
        if !c.failures.is_empty() {
            name += &format!(" ({} rep(s) failed)", c.failures.len());
        }
        let n =
            |v: Option<f64>, prec: usize| v.map_or("–".to_string(), |x| format!("{x:.prec$}"));
        let lower = if j["server"]["ctx_lower_bound"].as_bool() == Some(true) {
            "≥ "
        } else {
            ""
        };
        let left = match (
            c.f(&["server", "zombies_after"]),
            c.f(&["server", "left_behind"]),
        ) {
            (Some(z), Some(l)) if z + l > 0.0 => {
                format!("**{z:.0} zombie(s), {l:.0} process(es)**")
            }
            (Some(_), Some(_)) => "nothing".into(),
            _ => "–".into(),
        };
        let _ = writeln!(
            out,
            "| {name} | {tp:.0} ± {sd:.0} | {:.2} | {} | {} | {} | {} | {} | {lower}{} / {} | {} | {} | {} | {left} | {} | {} | {} |",
            if best > 0.0 { tp / best } else { 0.0 },
            n(c.p("p50"), 0),
            n(c.p("p99"), 0),
            n(c.p("max"), 0),
            n(c.cpu_per_echo(), 2),
            n(c.cpu_share().map(|x| 100.0 * x), 1),
            n(c.f(&["server", "ctx_voluntary"]), 0),
            n(c.f(&["server", "ctx_involuntary"]), 0),
            n(c.mem_mib(), 1),
            n(c.f(&["server", "threads"]), 0),
            n(c.f(&["server", "processes"]), 0),
            n(c.f(&["client", "cpu_us_per_msg"]), 1),
            // Closed loop: no schedule, so no lag to report.
            n(c.f(&["client", "send_lag_us", "p99"]), 0),
            if j["client"]["client_bound"].as_bool() == Some(true)
                || j["client"]["saturated"].as_bool() == Some(true)
            {
                "**yes** (latency includes client lag)"
            } else {
                "no"
            },
        );
    }
    for (name, id, why) in skipped {
        if *name == sc.name {
            let _ = writeln!(
                out,
                "| {id} | skipped: {} |||||||||||||||",
                why.replace('|', "/")
            );
        }
    }
    out
}

fn syscall_section(outcome: &Outcome) -> String {
    let mut md = String::from("## Syscalls per echo\n\n");
    match outcome {
        Outcome::NotAsked => md.push_str("Not counted (`--no-syscalls`).\n\n"),
        Outcome::NoTracer(why) => {
            let _ = writeln!(md, "Not counted: {why}.\n");
        }
        Outcome::Counted(counts) => {
            let _ = writeln!(
                md,
                "Each server once more under `strace -f -c`, after the timed runs and apart \
                 from them (tracing stops the server at every call): one connection, {} \
                 echoes of 64 B, the counts over all its threads and processes divided by \
                 the echoes. Start-up and shutdown are included, spread over the echoes; \
                 calls under 0.1 per echo are summed into one figure. *failed* counts the calls that \
                 returned an error (EAGAIN, mostly).\n",
                crate::syscalls::MESSAGES
            );
            md.push_str("| server | calls per echo | the calls (per echo, failed in brackets) |\n|---|---:|---|\n");
            for c in counts {
                if let Some(f) = &c.failure {
                    let _ = writeln!(
                        md,
                        "| {} | – | not counted: {} |",
                        c.server,
                        f.replace('|', "/")
                    );
                    continue;
                }
                // Calls made a few times in all (start-up, shutdown: an
                // interpreter's imports, a pool's threads) are summed into
                // one figure rather than listed, so that the calls each echo
                // makes stand out.
                let (each, rest): (Vec<_>, Vec<_>) =
                    c.per_echo().into_iter().partition(|(_, n)| *n >= 0.1);
                let mut list: Vec<String> = each
                    .into_iter()
                    .map(|(name, n)| {
                        let failed = c
                            .errors
                            .get(&name)
                            .map_or(0.0, |&e| e as f64 / c.messages as f64);
                        if failed >= 0.01 {
                            format!("{name} {n:.2} ({failed:.2} failed)")
                        } else {
                            format!("{name} {n:.2}")
                        }
                    })
                    .collect();
                let other: f64 = rest.iter().map(|(_, n)| n).sum();
                if other >= 0.005 {
                    list.push(format!(
                        "{other:.2} in {} other call(s), start-up and shutdown mostly",
                        rest.len()
                    ));
                }
                let _ = writeln!(
                    md,
                    "| {} | {:.2} | {} |",
                    c.server,
                    c.total_per_echo(),
                    list.join(", ")
                );
            }
            md.push('\n');
        }
    }
    md
}

/// What the claims read from the run.
pub struct ClaimData<'a> {
    cells: &'a [Merged],
}

impl ClaimData<'_> {
    fn cell(&self, scenario: &str, server: &str) -> Option<&Merged> {
        self.cells
            .iter()
            .find(|c| c.scenario.name == scenario && c.server == server)
    }

    /// Throughput of a cell.
    pub fn throughput(&self, scenario: &str, server: &str) -> Option<f64> {
        self.cell(scenario, server)?.throughput()
    }

    /// Server CPU µs per echo of a cell.
    pub fn cpu_per_echo(&self, scenario: &str, server: &str) -> Option<f64> {
        self.cell(scenario, server)?.cpu_per_echo()
    }

    /// Server CPU as a share of one core.
    pub fn cpu_share(&self, scenario: &str, server: &str) -> Option<f64> {
        self.cell(scenario, server)?.cpu_share()
    }

    /// A latency percentile (`p50`, `p99`, …) in µs.
    pub fn latency(&self, scenario: &str, server: &str, which: &str) -> Option<f64> {
        self.cell(scenario, server)?.p(which)
    }

    /// Voluntary + involuntary context switches per echo.
    pub fn switches_per_echo(&self, scenario: &str, server: &str) -> Option<f64> {
        let c = self.cell(scenario, server)?;
        let n = c.f(&["server", "ctx_voluntary"])? + c.f(&["server", "ctx_involuntary"])?;
        let msgs = c.throughput()? * c.f(&["mean"])?;
        Some(n / msgs.max(1.0))
    }

    /// Most threads in a cell.
    pub fn threads(&self, scenario: &str, server: &str) -> Option<f64> {
        self.cell(scenario, server)?.f(&["server", "threads"])
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetitions_merge_field_by_field() {
        let a = json!({"times": [1.0], "max": 1.0, "min": 1.0, "throughput_msgs_per_s": 100.0,
            "memory_usage_byte": [10], "server": {"peak_memory_bytes": 10, "cpu_total_s": 1.0},
            "client": {"saturated": false}, "parameters": {"model": "x"}});
        let b = json!({"times": [3.0], "max": 3.0, "min": 3.0, "throughput_msgs_per_s": 300.0,
            "memory_usage_byte": [30], "server": {"peak_memory_bytes": 30, "cpu_total_s": 3.0},
            "client": {"saturated": true}, "parameters": {"model": "x"}});
        let m = merge("", &[&a, &b]);
        assert_eq!(m["times"], json!([1.0, 3.0]));
        assert_eq!(m["memory_usage_byte"], json!([10, 30]));
        assert_eq!(m["max"], json!(3.0));
        assert_eq!(m["min"], json!(1.0));
        assert_eq!(m["throughput_msgs_per_s"], json!(200.0));
        assert_eq!(m["server"]["peak_memory_bytes"], json!(30));
        assert_eq!(m["server"]["cpu_total_s"], json!(2.0));
        assert_eq!(m["client"]["saturated"], json!(true));
        assert_eq!(m["parameters"]["model"], json!("x"));
    }
}
