//! Results as files: hyperfine's `--export-json` schema with our extra
//! fields (the Markdown of `all` is built from them in [`crate::results`]).
//!
//! hyperfine's schema times a *command*; here one repetition is one
//! workload, so `times` are the measured windows in wall seconds and
//! `user`/`system` are the server's CPU seconds (the client's own for
//! `load`, which knows no server). Tools that read hyperfine's files then
//! work unchanged, and nothing of ours hides in a field they interpret.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::load::LoadResult;
use crate::proc::{CtxSource, ServerStats};
use crate::stats::{self, Percentiles, summarize};

/// One repetition: the load's figures and, under `run`, the server's.
#[derive(Debug, Clone)]
pub struct Rep {
    /// The workload's result.
    pub load: LoadResult,
    /// The server tree over the same window (`None` for `load`, or when the
    /// window never opened).
    pub server: Option<ServerStats>,
}

impl Rep {
    /// 0 when every byte was verified and nothing failed, else 1.
    pub fn exit_code(&self) -> i32 {
        if self.load.ok() { 0 } else { 1 }
    }

    /// Server CPU (user + system) per verified echo, in microseconds.
    pub fn cpu_us_per_echo(&self) -> Option<f64> {
        let s = self.server?;
        Some(s.cpu_total_s * 1e6 / self.load.messages.max(1) as f64)
    }
}

/// The whole file.
#[derive(Debug, Serialize)]
pub struct Export {
    /// One entry per command (model × scenario).
    pub results: Vec<JsonResult>,
}

/// One hyperfine result plus our fields.
#[derive(Debug, Serialize)]
pub struct JsonResult {
    /// The command line that produced it.
    pub command: String,
    /// Mean wall seconds per repetition.
    pub mean: f64,
    /// Sample standard deviation; `null` for one repetition.
    pub stddev: Option<f64>,
    /// Median wall seconds.
    pub median: f64,
    /// Mean server user CPU seconds (client's for `load`).
    pub user: f64,
    /// Mean server system CPU seconds (client's for `load`).
    pub system: f64,
    /// Shortest repetition.
    pub min: f64,
    /// Longest repetition.
    pub max: f64,
    /// Wall seconds per repetition.
    pub times: Vec<f64>,
    /// 0 for a fully verified repetition, 1 otherwise.
    pub exit_codes: Vec<i32>,
    /// What was run.
    pub parameters: BTreeMap<String, String>,
    /// hyperfine's field: peak memory per repetition, in bytes (here the
    /// server tree's, as `peak_memory_bytes` measures it; 0 where the
    /// server could not be measured).
    pub memory_usage_byte: Vec<u64>,
    /// Mean verified echoes per second.
    pub throughput_msgs_per_s: f64,
    /// Percentiles of all repetitions' latencies together.
    pub latency_us: Percentiles,
    /// The server tree's figures (`null` for `load`).
    pub server: Option<ServerJson>,
    /// The load generator's own cost.
    pub client: ClientJson,
}

/// Server figures: means over repetitions, maxima for the peaks.
#[derive(Debug, Serialize)]
pub struct ServerJson {
    /// How they were measured: `cgroup-v2`, `cgroup-v1` or `proc`.
    pub measurement: String,
    /// What that measurement covers and misses, in one sentence.
    pub measurement_note: String,
    /// Mean user CPU seconds.
    pub cpu_user_s: f64,
    /// Mean system CPU seconds.
    pub cpu_sys_s: f64,
    /// Mean total CPU seconds of the whole tree (cgroup counters, or the
    /// processes' CPU clocks for `proc`).
    pub cpu_total_s: f64,
    /// Mean CPU microseconds per echo, from `cpu_total_s`.
    pub cpu_us_per_echo: f64,
    /// Mean voluntary context switches.
    pub ctx_voluntary: f64,
    /// Mean involuntary context switches.
    pub ctx_involuntary: f64,
    /// How they were obtained: `proc-edges+taskstats` (the tasks at the
    /// window's edges from `/proc`, plus the kernel's exit record of each
    /// task that ended inside it: exact) or `proc-edges` (taskstats
    /// refused: tasks that ended inside the window are missing).
    pub ctx_source: String,
    /// True if tasks exited in some repetition's window and their switches
    /// could not all be counted: the counts are then lower bounds.
    pub ctx_lower_bound: bool,
    /// Largest peak memory: the cgroup's charge peak, or summed PSS.
    pub peak_memory_bytes: u64,
    /// Most threads (tasks) at once.
    pub threads: u64,
    /// Most processes seen at the window's edges.
    pub processes: u64,
    /// Most zombie children left in the tree after the last client went
    /// (and a moment to reap them), over the repetitions.
    pub zombies_after: Option<u64>,
    /// Most processes that outlived the server after SIGTERM, over the
    /// repetitions.
    pub left_behind: Option<u64>,
}

/// Client figures.
#[derive(Debug, Serialize)]
pub struct ClientJson {
    /// Mean client CPU seconds (user + system).
    pub cpu_s: f64,
    /// Mean client CPU microseconds per verified message, to read beside
    /// the server's `cpu_us_per_echo`.
    pub cpu_us_per_msg: f64,
    /// Open loop: percentiles of all repetitions' send lags together, in
    /// microseconds (send instant minus scheduled time); `null` in the
    /// closed loop.
    pub send_lag_us: Option<Percentiles>,
    /// The p99 send lag above which a repetition is client-bound.
    pub send_lag_bound_us: u64,
    /// True if the load threads of any repetition used at least 90 % of
    /// the CPU they could have had.
    pub saturated: bool,
    /// True if any repetition was client-bound: saturated, or its p99 send
    /// lag above `send_lag_bound_us`. The latency figures then include the
    /// client's own lag.
    pub client_bound: bool,
    /// Why, per client-bound repetition ("rep N: ...").
    pub client_bound_reasons: Vec<String>,
}

impl ClientJson {
    /// The client's figures over `reps`.
    pub fn of(reps: &[Rep]) -> ClientJson {
        let mut lag: Option<hdrhistogram::Histogram<u64>> = None;
        for h in reps.iter().filter_map(|r| r.load.send_lag.as_ref()) {
            // Same bounds on both sides, so adding cannot fail.
            let _ = lag.get_or_insert_with(stats::new_histogram).add(h);
        }
        let reasons: Vec<String> = reps
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let why = r.load.client_bound_reasons();
                (!why.is_empty()).then(|| format!("rep {}: {}", i + 1, why.join("; ")))
            })
            .collect();
        ClientJson {
            cpu_s: stats::mean(
                &reps
                    .iter()
                    .map(|r| r.load.client_cpu_s())
                    .collect::<Vec<_>>(),
            ),
            cpu_us_per_msg: stats::mean(
                &reps
                    .iter()
                    .map(|r| r.load.client_cpu_us_per_msg())
                    .collect::<Vec<_>>(),
            ),
            send_lag_us: lag.as_ref().map(Percentiles::of),
            send_lag_bound_us: crate::load::SEND_LAG_BOUND_US,
            saturated: reps.iter().any(|r| r.load.saturated()),
            client_bound: !reasons.is_empty(),
            client_bound_reasons: reasons,
        }
    }
}

/// Builds one result from its repetitions; `None` for none.
pub fn json_result(
    command: &str,
    parameters: BTreeMap<String, String>,
    reps: &[Rep],
) -> Option<JsonResult> {
    let times: Vec<f64> = reps.iter().map(|r| r.load.elapsed.as_secs_f64()).collect();
    let t = summarize(&times)?;
    let mut latency = stats::new_histogram();
    for r in reps {
        let _ = latency.add(&r.load.latency);
    }
    let servers: Vec<ServerStats> = reps.iter().filter_map(|r| r.server).collect();
    let over =
        |f: &dyn Fn(&ServerStats) -> f64| stats::mean(&servers.iter().map(f).collect::<Vec<_>>());
    let server = servers.first().map(|first| ServerJson {
        measurement: first.method.name().to_string(),
        measurement_note: first.method.note().to_string(),
        cpu_user_s: over(&|s| s.cpu_user_s),
        cpu_sys_s: over(&|s| s.cpu_sys_s),
        cpu_total_s: over(&|s| s.cpu_total_s),
        cpu_us_per_echo: stats::mean(
            &reps
                .iter()
                .filter_map(Rep::cpu_us_per_echo)
                .collect::<Vec<_>>(),
        ),
        ctx_voluntary: over(&|s| s.ctx_voluntary as f64),
        ctx_involuntary: over(&|s| s.ctx_involuntary as f64),
        ctx_source: if servers
            .iter()
            .all(|s| s.ctx_source == CtxSource::ExitRecords)
        {
            CtxSource::ExitRecords.name().to_string()
        } else {
            CtxSource::Edges.name().to_string()
        },
        ctx_lower_bound: servers.iter().any(|s| s.ctx_lower_bound),
        peak_memory_bytes: servers
            .iter()
            .map(|s| s.peak_memory_bytes)
            .max()
            .unwrap_or(0),
        threads: servers.iter().map(|s| s.threads).max().unwrap_or(0),
        processes: servers.iter().map(|s| s.processes).max().unwrap_or(0),
        zombies_after: servers.iter().filter_map(|s| s.zombies_after).max(),
        left_behind: servers.iter().filter_map(|s| s.left_behind).max(),
    });
    let (user, system) = match &server {
        Some(s) => (s.cpu_user_s, s.cpu_sys_s),
        None => (
            stats::mean(
                &reps
                    .iter()
                    .map(|r| r.load.client_user.as_secs_f64())
                    .collect::<Vec<_>>(),
            ),
            stats::mean(
                &reps
                    .iter()
                    .map(|r| r.load.client_sys.as_secs_f64())
                    .collect::<Vec<_>>(),
            ),
        ),
    };
    Some(JsonResult {
        command: command.to_string(),
        mean: t.mean,
        stddev: t.stddev,
        median: t.median,
        user,
        system,
        min: t.min,
        max: t.max,
        times,
        exit_codes: reps.iter().map(Rep::exit_code).collect(),
        parameters,
        memory_usage_byte: reps
            .iter()
            .map(|r| r.server.map_or(0, |s| s.peak_memory_bytes))
            .collect(),
        throughput_msgs_per_s: stats::mean(
            &reps.iter().map(|r| r.load.msgs_per_s()).collect::<Vec<_>>(),
        ),
        latency_us: Percentiles::of(&latency),
        server,
        client: ClientJson::of(reps),
    })
}

/// Writes `results` to `path` as pretty JSON.
pub fn write_json(path: &Path, results: Vec<JsonResult>) -> Result<(), String> {
    let text = serde_json::to_string_pretty(&Export { results })
        .map_err(|e| format!("cannot encode the results: {e}"))?;
    std::fs::write(path, text + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The shell-quoted command line of this process, for the record.
pub fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+".contains(c))
            {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Errors, LoadSpec, Stop};
    use crate::proc::Method;
    use std::time::Duration;

    fn rep(elapsed_ms: u64, messages: u64, cpu_s: f64) -> Rep {
        let mut latency = stats::new_histogram();
        latency.record(100).unwrap();
        Rep {
            load: LoadResult {
                spec: LoadSpec {
                    addr: "127.0.0.1:1".parse().unwrap(),
                    conns: 1,
                    size: 64,
                    stop: Stop::Messages(messages),
                    rate: None,
                    threads: 1,
                    reconnect: false,
                    idle: 0,
                },
                messages,
                expected_messages: Some(messages),
                bytes_sent: messages * 64,
                bytes_received: messages * 64,
                elapsed: Duration::from_millis(elapsed_ms),
                latency,
                send_lag: None,
                errors: Errors::default(),
                client_user: Duration::from_millis(10),
                client_sys: Duration::from_millis(20),
                cpus: 1,
                thread_cpus: Vec::new(),
            },
            server: Some(ServerStats {
                method: Method::CgroupV1,
                cpu_user_s: cpu_s,
                cpu_sys_s: cpu_s,
                cpu_total_s: 2.0 * cpu_s,
                ctx_voluntary: 10,
                ctx_involuntary: 2,
                ctx_source: CtxSource::ExitRecords,
                ctx_lower_bound: false,
                peak_memory_bytes: 1 << 20,
                threads: 3,
                processes: 1,
                zombies_after: Some(0),
                left_behind: Some(0),
            }),
        }
    }

    #[test]
    fn json_has_hyperfine_fields_and_ours() {
        let reps = [rep(1000, 1000, 0.5), rep(2000, 1000, 0.5)];
        let r = json_result("x", BTreeMap::new(), &reps).unwrap();
        assert_eq!(r.times, vec![1.0, 2.0]);
        assert_eq!(r.mean, 1.5);
        assert_eq!(r.exit_codes, vec![0, 0]);
        assert_eq!(r.memory_usage_byte, vec![1 << 20, 1 << 20]);
        assert_eq!((r.user, r.system), (0.5, 0.5));
        assert_eq!(r.throughput_msgs_per_s, 750.0);
        let s = r.server.as_ref().unwrap();
        // 1 s of CPU for 1000 echoes
        assert!((s.cpu_us_per_echo - 1000.0).abs() < 1e-9);
        assert_eq!(s.measurement, "cgroup-v1");
        let v = serde_json::to_value(&r).unwrap();
        for key in [
            "command",
            "mean",
            "stddev",
            "median",
            "user",
            "system",
            "min",
            "max",
            "times",
            "exit_codes",
            "parameters",
            "memory_usage_byte",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        let one = json_result("x", BTreeMap::new(), &reps[..1]).unwrap();
        assert!(serde_json::to_value(&one).unwrap()["stddev"].is_null());
    }

    #[test]
    fn client_figures_reach_the_json() {
        let mut late = rep(1000, 1000, 0.1);
        late.load.spec.rate = Some(1000.0);
        let mut lag = stats::new_histogram();
        lag.record_n(10, 97).unwrap();
        lag.record_n(3 * crate::load::SEND_LAG_BOUND_US, 3).unwrap();
        late.load.send_lag = Some(lag);
        let on_time = {
            let mut r = late.clone();
            let mut lag = stats::new_histogram();
            lag.record_n(10, 100).unwrap();
            r.load.send_lag = Some(lag);
            r
        };
        // 30 ms of client CPU for 1000 messages
        let j = json_result("x", BTreeMap::new(), std::slice::from_ref(&on_time)).unwrap();
        let v = serde_json::to_value(&j).unwrap();
        assert_eq!(v["client"]["cpu_us_per_msg"], 30.0);
        assert_eq!(v["client"]["send_lag_us"]["p99"], 10);
        assert_eq!(v["client"]["client_bound"], false);
        let j = json_result("x", BTreeMap::new(), &[on_time.clone(), late.clone()]).unwrap();
        let v = serde_json::to_value(&j).unwrap();
        assert_eq!(v["client"]["client_bound"], true);
        let why = v["client"]["client_bound_reasons"][0].as_str().unwrap();
        assert!(why.starts_with("rep 2: p99 send lag 3"), "{why}");
        // The closed loop has no send lag at all.
        let j = json_result("x", BTreeMap::new(), &[rep(1000, 1000, 0.1)]).unwrap();
        assert!(serde_json::to_value(&j).unwrap()["client"]["send_lag_us"].is_null());
    }
}
