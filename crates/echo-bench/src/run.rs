//! `echo-bench run`: one model (or any binary that follows the server
//! contract), spawned fresh for every repetition in a cgroup and a process
//! group of its own, pinned away from the load, measured by counters read
//! at the edges of the load's window ([`crate::proc`]) and by the kernel's
//! exit records of the tasks that end inside it ([`crate::exits`]).
//!
//! Syscalls: `fork`/`execve` through `std::process`; in the child before
//! `exec`, `sched_setaffinity(2)`, `prctl(PR_SET_PDEATHSIG)` and a write to
//! the cgroup's `cgroup.procs`; `sched_setaffinity(2)` on our own thread
//! before the load threads are spawned (they inherit it); `kill(2)` with
//! SIGTERM to stop the server, then SIGKILL to its group and cgroup.
//!
//! Pinning the server to CPU 0 and the client to the other CPUs (CPU 1
//! here; its load threads one CPU each where there are several) keeps them
//! from fighting for one core, which would make every design look alike; it also
//! means a multi-threaded model gets one core, which is the fair comparison
//! on a two-core machine but not its best showing. On one core nothing is
//! pinned and the output says so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use echo_conformance::ServerProcess;
use echo_conformance::cgroup::{Cgroup, Version};
use echo_conformance::tree;
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

use crate::load::{self, LoadSpec, Window};
use crate::proc::{Meter, Method};
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
    /// Server on CPU 0, load on these CPUs (every other CPU it may use).
    Pinned(Vec<usize>),
    /// Not pinned, with the reason.
    Shared(String),
}

impl Pinning {
    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Pinning::Pinned(load) => {
                let list: Vec<String> = load.iter().map(usize::to_string).collect();
                format!(
                    "server pinned to CPU 0, load generator to CPU(s) {} \
                     (several load threads: one CPU each, in turn)",
                    list.join(",")
                )
            }
            Pinning::Shared(why) => format!("not pinned: {why}"),
        }
    }
}

/// Pins the calling thread (and so every thread it spawns later) to every
/// CPU it may use but CPU 0, which goes to the server: CPU 1 on a two-core
/// machine, and on a larger one the rest, over which the load threads
/// then spread (`load::run_with`).
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
    let load: Vec<usize> = (1..CpuSet::count())
        .filter(|&i| allowed.is_set(i).unwrap_or(false))
        .collect();
    if !allowed.is_set(0).unwrap_or(false) || load.is_empty() {
        return Pinning::Shared(
            "CPU 0 and at least one other CPU are not both available to this process".into(),
        );
    }
    let mut set = CpuSet::new();
    if let Err(e) = load
        .iter()
        .try_for_each(|&c| set.set(c))
        .and_then(|_| sched_setaffinity(Pid::from_raw(0), &set))
    {
        return Pinning::Shared(format!("cannot pin the load away from CPU 0: {e}"));
    }
    Pinning::Pinned(load)
}

/// Which measurement `run` and `all` should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// A cgroup if one can be made, else the `/proc` tree.
    Auto,
    /// A cgroup, or an error.
    Cgroup,
    /// The `/proc` tree, even where a cgroup could be made.
    Proc,
}

/// Decides the method once per run, by making (and removing) a probe
/// group; with `Auto`, a failure is the reason printed for the fallback.
pub fn choose_method(measure: Measure) -> Result<(Method, Option<String>), String> {
    if measure == Measure::Proc {
        return Ok((Method::Proc, Some("--measure proc was asked for".into())));
    }
    match Cgroup::create("echo-bench-probe") {
        Ok(cg) => Ok((method_of(&cg), None)),
        Err(why) if measure == Measure::Auto => Ok((Method::Proc, Some(why))),
        Err(why) => Err(format!("cannot make a cgroup: {why}")),
    }
}

fn method_of(cg: &Cgroup) -> Method {
    match cg.version() {
        Version::V2 => Method::CgroupV2,
        Version::V1 => Method::CgroupV1,
    }
}

/// One line saying which measurement is used and what it means.
pub fn describe_method(method: Method, why_fallback: Option<&str>) -> String {
    match why_fallback {
        Some(why) if method == Method::Proc => {
            format!("measurement: {} ({why}); {}", method.name(), method.note())
        }
        _ => format!("measurement: {}; {}", method.name(), method.note()),
    }
}

/// One repetition: fresh server (in a fresh cgroup unless `method` is
/// [`Method::Proc`]), load, figures from the window's edges, the server
/// and everything it left stopped.
pub fn one_rep(
    bin: &Path,
    model_args: &[String],
    spec: &LoadSpec,
    pinning: &Pinning,
    method: Method,
) -> Result<Rep, String> {
    let mut cmd = Command::new(bin);
    cmd.args(["--addr", "127.0.0.1:0"]).args(model_args);
    let cpu0 = if matches!(pinning, Pinning::Pinned(_)) {
        let mut cpu0 = CpuSet::new();
        cpu0.set(0).map_err(|e| format!("cpu set: {e}"))?;
        Some(cpu0)
    } else {
        None
    };
    let parent = std::process::id() as i32;
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed: raw sched_setaffinity on a
    // CpuSet built before the fork, prctl and getppid; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(cpu0) = &cpu0 {
                sched_setaffinity(Pid::from_raw(0), cpu0).map_err(std::io::Error::from)?;
            }
            // The server has a process group of its own, so Ctrl-C no
            // longer reaches it: if we die without running our cleanup,
            // the kernel kills it. (The signal fires when the spawning
            // thread exits, which is our main thread here.)
            nix::sys::prctl::set_pdeathsig(Some(nix::sys::signal::Signal::SIGKILL))
                .map_err(std::io::Error::from)?;
            if nix::unistd::getppid().as_raw() != parent {
                return Err(std::io::Error::other("echo-bench exited during the spawn"));
            }
            Ok(())
        });
    }
    let mut server = match method {
        Method::Proc => ServerProcess::spawn_command(cmd)?,
        Method::CgroupV1 | Method::CgroupV2 => {
            let cg = Cgroup::create("echo-bench")?;
            if method_of(&cg) != method {
                return Err(format!(
                    "the cgroup made is {}, not {} as probed",
                    cg.version().name(),
                    method.name()
                ));
            }
            ServerProcess::spawn_command_in(cmd, cg)?
        }
    };
    let spec = LoadSpec {
        addr: server.addr(),
        ..*spec
    };
    // The server's tasks exit where they run: on CPU 0 when pinned.
    let server_cpus = match pinning {
        Pinning::Pinned(_) => "0".to_string(),
        Pinning::Shared(_) => crate::exits::possible_cpus(),
    };
    let mut meter = Meter::new(method, &server_cpus);
    let result = load::run_with(&spec, &mut |w| match w {
        Window::Start => meter.mark_start(&mut server),
        Window::End => meter.mark_end(&server),
    });
    let mut stats = meter.finish();
    // After the window: what the server kept of its finished clients, and
    // what outlives it.
    let zombies = settled_zombies(server.pid());
    let stopped = server.stop();
    let load = result?;
    if let Err(e) = &stopped.status {
        eprintln!("warning: server {e}");
    }
    if let Some(s) = stats.as_mut() {
        s.zombies_after = zombies;
        s.left_behind = stopped
            .status
            .is_ok()
            .then_some(stopped.left_behind.len() as u64);
    }
    Ok(Rep {
        load,
        server: stats,
    })
}

/// How long a server gets to reap the children of its last clients before
/// the zombies still in its tree are counted.
pub const ZOMBIE_SETTLE: Duration = Duration::from_secs(1);

/// Zombie children in `pid`'s tree, once there are none or
/// [`ZOMBIE_SETTLE`] has passed; `None` if the server is gone.
fn settled_zombies(pid: u32) -> Option<u64> {
    let deadline = Instant::now() + ZOMBIE_SETTLE;
    loop {
        let z = tree::counts(pid)?.zombies;
        if z == 0 || Instant::now() >= deadline {
            return Some(z);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One repetition as a few indented lines.
pub fn render_rep(rep: &Rep) -> String {
    let l = &rep.load;
    let p = Percentiles::of(&l.latency);
    let mut s = format!(
        "  {} msgs in {:.3} s = {:.0} msgs/s, {:.2} MB/s (echoed payload, one way)\n\
         \x20 latency µs p50 {} p90 {} p99 {} p99.9 {} max {}{}; errors {}\n",
        l.messages,
        l.elapsed.as_secs_f64(),
        l.msgs_per_s(),
        l.mb_per_s(),
        p.p50,
        p.p90,
        p.p99,
        p.p999,
        p.max,
        if l.client_bound() {
            load::INCLUDES_CLIENT_LAG
        } else {
            ""
        },
        l.errors,
    );
    for e in &l.errors.examples {
        s.push_str(&format!("    error: {e}\n"));
    }
    if let Some(sv) = rep.server {
        let memory = match sv.method {
            Method::Proc => "summed PSS at the edges",
            _ => "cgroup charge peak",
        };
        s.push_str(&format!(
            "  server ({}): cpu {:.4} s ({:.3} s user + {:.3} s sys) = {:.2} µs per echo; \
             ctx switches {} voluntary / {} involuntary ({}){}\n\
             \x20 server: peak memory {:.1} MiB ({memory}), {} thread(s), {} process(es)\n",
            sv.method.name(),
            sv.cpu_total_s,
            sv.cpu_user_s,
            sv.cpu_sys_s,
            rep.cpu_us_per_echo().unwrap_or(0.0),
            sv.ctx_voluntary,
            sv.ctx_involuntary,
            sv.ctx_source.name(),
            if sv.ctx_lower_bound {
                ", lower bounds: tasks that exited in the window took theirs"
            } else {
                ""
            },
            sv.peak_memory_bytes as f64 / (1 << 20) as f64,
            sv.threads,
            sv.processes,
        ));
        if let (Some(z), Some(l)) = (sv.zombies_after, sv.left_behind) {
            s.push_str(&format!(
                "  after: {z} zombie child(ren) once the clients had gone, \
                 {l} process(es) outliving the server after SIGTERM\n"
            ));
        }
    }
    s.push_str(&format!(
        "  client: cpu {:.3} s = {:.2} µs per message ({:.0} % of {} CPU(s)); load threads {}\n",
        l.client_cpu_s(),
        l.client_cpu_us_per_msg(),
        100.0 * l.client_cpu_share(),
        l.capacity(),
        l.placement(),
    ));
    if let Some(line) = l.render_send_lag() {
        s.push_str(&format!("  client: send lag µs {line}\n"));
    }
    let bound = l.render_client_bound();
    if !bound.is_empty() {
        s.push_str(&format!("  {bound}"));
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
