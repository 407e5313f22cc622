//! `echo-bench run`: one model, spawned fresh for every repetition, pinned
//! away from the load, sampled from `/proc` while the load runs.
//!
//! Syscalls: `fork`/`execve` through `std::process`, `sched_setaffinity(2)`
//! in the child before `exec` and on our own thread before the load threads
//! are spawned (they inherit it), `kill(2)` with SIGTERM to stop the server.
//!
//! Pinning the server to CPU 0 and the client to CPU 1 keeps them from
//! fighting for one core, which would make every design look alike; it also
//! means a multi-threaded model gets one core, which is the fair comparison
//! on a two-core machine but not its best showing. On one core nothing is
//! pinned and the output says so.

use std::path::{Path, PathBuf};
use std::process::Command;

use echo_conformance::ServerProcess;
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

use crate::load::{self, LoadSpec, Window};
use crate::proc::{self, Sampler};
use crate::report::Rep;
use crate::stats::{Percentiles, summarize};

/// Every model id, in teaching order. The binary of model `id` is `echo-<id>`.
pub const MODELS: &[&str] = &[
    "iterative",
    "fork-per-client",
    "prefork",
    "thread-per-client",
    "thread-pool",
    "busy-poll",
    "select",
    "poll",
    "epoll",
    "mio",
    "async-from-scratch",
    "tokio",
    "io-uring",
    "sigio",
];

/// Where the binary of model `id` would be: next to our own executable, in
/// the same target directory and profile.
pub fn binary(id: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate echo-bench: {e}"))?;
    let dir = exe
        .parent()
        .ok_or_else(|| format!("{} has no parent directory", exe.display()))?;
    Ok(dir.join(format!("echo-{id}")))
}

/// Like [`binary`], but an error naming the build command if it is missing.
pub fn existing_binary(id: &str) -> Result<PathBuf, String> {
    let bin = binary(id)?;
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "{} not found; build it with: cargo build --release -p echo-{id}",
            bin.display()
        ))
    }
}

/// Whether the server and the load got CPUs of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pinning {
    /// Server on CPU 0, load on CPU 1.
    Pinned,
    /// Not pinned, with the reason.
    Shared(String),
}

impl Pinning {
    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Pinning::Pinned => "server pinned to CPU 0, load generator to CPU 1".into(),
            Pinning::Shared(why) => format!("not pinned: {why}"),
        }
    }
}

/// Pins the calling thread (and so every thread it spawns later) to CPU 1
/// when there are two CPUs we may use; the server goes to CPU 0.
pub fn pin_self() -> Pinning {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    if n < 2 {
        return Pinning::Shared(
            "only one CPU: client and server share the only CPU, figures include their contention"
                .into(),
        );
    }
    let allowed = match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => set,
        Err(e) => return Pinning::Shared(format!("cannot read the CPU affinity: {e}")),
    };
    if !(allowed.is_set(0).unwrap_or(false) && allowed.is_set(1).unwrap_or(false)) {
        return Pinning::Shared("CPUs 0 and 1 are not both available to this process".into());
    }
    let mut one = CpuSet::new();
    if let Err(e) = one
        .set(1)
        .and_then(|_| sched_setaffinity(Pid::from_raw(0), &one))
    {
        return Pinning::Shared(format!("cannot pin the load to CPU 1: {e}"));
    }
    Pinning::Pinned
}

/// One repetition: fresh server, load, sampled figures, server stopped.
pub fn one_rep(
    bin: &Path,
    model_args: &[String],
    spec: &LoadSpec,
    pinning: &Pinning,
) -> Result<Rep, String> {
    let mut cmd = Command::new(bin);
    cmd.args(["--addr", "127.0.0.1:0"]).args(model_args);
    if *pinning == Pinning::Pinned {
        let mut cpu0 = CpuSet::new();
        cpu0.set(0).map_err(|e| format!("cpu set: {e}"))?;
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs in the child between fork and exec, where
        // only async-signal-safe calls are allowed: it makes one raw
        // sched_setaffinity system call on a CpuSet built before the fork,
        // and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                sched_setaffinity(Pid::from_raw(0), &cpu0).map_err(std::io::Error::from)
            });
        }
    }
    let server = ServerProcess::spawn_command(cmd)?;
    let spec = LoadSpec {
        addr: server.addr(),
        ..*spec
    };
    let mut sampler = Sampler::start(server.pid());
    let result = load::run_with(&spec, &mut |w| match w {
        Window::Start => sampler.mark_start(),
        Window::End => sampler.mark_end(),
    });
    let stats = sampler.finish();
    let stopped = server.terminate();
    let load = result?;
    if let Err(e) = stopped {
        eprintln!("warning: server {}", e);
    }
    Ok(Rep {
        load,
        server: Some(stats),
    })
}

/// One repetition as a few indented lines.
pub fn render_rep(rep: &Rep) -> String {
    let l = &rep.load;
    let p = Percentiles::of(&l.latency);
    let mut s = format!(
        "  {} msgs in {:.3} s = {:.0} msgs/s, {:.2} MB/s (echoed payload, one way)\n\
         \x20 latency µs p50 {} p90 {} p99 {} p99.9 {} max {}; errors {}\n",
        l.messages,
        l.elapsed.as_secs_f64(),
        l.msgs_per_s(),
        l.mb_per_s(),
        p.p50,
        p.p90,
        p.p99,
        p.p999,
        p.max,
        l.errors,
    );
    for e in &l.errors.examples {
        s.push_str(&format!("    error: {e}\n"));
    }
    if let Some(sv) = rep.server {
        s.push_str(&format!(
            "  server: cpu {:.4} s ({:.2} s user + {:.2} s sys in clock ticks) = {:.2} µs per echo; \
             ctx switches {} voluntary / {} involuntary\n\
             \x20 server: peak RSS {:.1} MiB, {} thread(s), {} process(es)\n",
            sv.cpu_total_s,
            sv.cpu_user_s,
            sv.cpu_sys_s,
            rep.cpu_us_per_echo().unwrap_or(0.0),
            sv.ctx_voluntary,
            sv.ctx_involuntary,
            sv.peak_rss_bytes as f64 / (1 << 20) as f64,
            sv.threads,
            sv.processes,
        ));
    }
    s.push_str(&format!(
        "  client: cpu {:.3} s ({:.0} % of {} CPU(s))\n",
        l.client_cpu_s(),
        100.0 * l.client_cpu_share(),
        l.capacity(),
    ));
    if l.saturated() {
        s.push_str(&format!("  {}\n", load::CLIENT_BOUND));
    }
    s
}

/// The closing summary of several repetitions.
pub fn render_summary(reps: &[Rep]) -> String {
    let tput: Vec<f64> = reps.iter().map(|r| r.load.msgs_per_s()).collect();
    match summarize(&tput) {
        None => "no repetition completed".into(),
        Some(t) => format!(
            "summary over {} repetition(s): {:.0} ± {:.0} msgs/s (min {:.0}, max {:.0}){}",
            reps.len(),
            t.mean,
            t.stddev.unwrap_or(0.0),
            t.min,
            t.max,
            if reps.iter().any(|r| !r.load.ok()) {
                "; SOME REPETITIONS HAD ERRORS"
            } else {
                ""
            }
        ),
    }
}

/// What the sampler cannot see, said once per run.
pub const SAMPLING_NOTE: &str = "note: server CPU comes from each process's CPU clock \
    (exited threads included); context switches, RSS, threads and processes are sampled \
    from /proc every 50 ms or more, so they are lower bounds: a thread that exits \
    between two samples loses its last switches";

/// Sampling interval, re-exported for the report header.
pub const SAMPLE_INTERVAL: std::time::Duration = proc::INTERVAL;
