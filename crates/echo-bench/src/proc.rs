//! Sampling a server's process tree from `/proc` while it is under load.
//!
//! Reads `/proc/<pid>/stat` (parent, CPU ticks, thread count),
//! `/proc/<pid>/status` (`VmRSS`), `/proc/<pid>/task/<tid>/status`
//! (context switches) every [`INTERVAL`] on a thread of its own, and each
//! process's CPU clock (`clock_getcpuclockid(3)` + `clock_gettime(2)`:
//! nanoseconds, every thread of the process, live or exited).
//!
//! Trade-offs, said once here and in the printed output:
//! - The tree is the root plus every live descendant found through the
//!   `ppid` field, so fork-per-client and prefork children count. CPU is the
//!   root's own and reaped-children time (`utime+stime+cutime+cstime`) plus
//!   the live descendants' own: a child moves from one term to the other
//!   when it is reaped, so nothing is counted twice. Those figures come in
//!   clock ticks (10 ms), too coarse for a run of a fraction of a second,
//!   so the total behind "CPU µs per echo" is taken from each process's CPU
//!   clock (nanoseconds, and it keeps the time of threads that have exited,
//!   which per-thread files lose). A child process that is reaped between
//!   two samples takes its clock with it, so for a tree that had several
//!   processes the larger of the two totals is used.
//! - Context switches are summed over every (pid, tid) ever seen, keeping
//!   the largest value read for each, so threads that exit mid-run still
//!   count; a thread that lives less than one interval may be missed.
//! - Peaks (RSS, threads, processes) are maxima over samples: a spike
//!   shorter than the interval may be missed.
//! - The sampler runs in the load generator's process and on its CPU. When
//!   one sample takes longer than a tenth of [`INTERVAL`] (thousands of
//!   server threads), it waits ten times as long as the sample took, so it
//!   never takes more than about a tenth of that CPU. The load's own CPU
//!   figure counts the load threads only.

use std::collections::HashMap;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Time between two samples.
pub const INTERVAL: Duration = Duration::from_millis(50);

/// What the tree used over a measured window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServerStats {
    /// User CPU seconds.
    pub cpu_user_s: f64,
    /// System CPU seconds.
    pub cpu_sys_s: f64,
    /// Total CPU seconds at nanosecond resolution (see the module header);
    /// what the CPU cost per echo is computed from.
    pub cpu_total_s: f64,
    /// Voluntary context switches (blocking waits).
    pub ctx_voluntary: u64,
    /// Involuntary context switches (preemptions).
    pub ctx_involuntary: u64,
    /// Largest summed resident set size seen.
    pub peak_rss_bytes: u64,
    /// Most threads seen at once, over all processes of the tree.
    pub threads: u64,
    /// Most processes seen at once.
    pub processes: u64,
}

/// One reading of the tree.
#[derive(Debug, Clone, Copy, Default)]
struct Snapshot {
    user_ticks: u64,
    sys_ticks: u64,
    /// Sum over every (pid, tid) ever seen of its largest count.
    voluntary: u64,
    involuntary: u64,
    /// Sum over every process ever seen of its largest CPU-clock reading.
    cpu_ns: u64,
}

#[derive(Default)]
struct State {
    /// (pid, tid) -> largest (voluntary, involuntary) read.
    ctx: HashMap<(i32, i32), (u64, u64)>,
    /// pid -> largest CPU-clock nanoseconds read.
    cpu_ns: HashMap<i32, u64>,
    peak_rss: u64,
    peak_threads: u64,
    peak_procs: u64,
}

/// A running sampler; [`Sampler::mark`] takes a synchronous snapshot for
/// the edges of the measured window.
pub struct Sampler {
    root: i32,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    start: Option<Snapshot>,
    end: Option<Snapshot>,
}

impl Sampler {
    /// Starts sampling the tree rooted at `root`.
    pub fn start(root: u32) -> Sampler {
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let root = root as i32;
        let handle = {
            let (state, stop) = (state.clone(), stop.clone());
            thread::Builder::new()
                .name("sampler".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let took = Instant::now();
                        sample(root, &state);
                        // The sampler shares the load generator's CPU. A
                        // tree of 10,000 threads takes milliseconds to read,
                        // so back off to keep it under ~10 % of that CPU.
                        thread::sleep(INTERVAL.max(took.elapsed() * 10));
                    }
                })
                .ok()
        };
        Sampler {
            root,
            state,
            stop,
            handle,
            start: None,
            end: None,
        }
    }

    /// Snapshot at the start of the window.
    pub fn mark_start(&mut self) {
        let snap = sample(self.root, &self.state);
        // Peaks are meant for the loaded server; the baseline before the
        // window is still in them, which is what the server costs at rest.
        self.start = Some(snap);
    }

    /// Snapshot at the end of the window.
    pub fn mark_end(&mut self) {
        self.end = Some(sample(self.root, &self.state));
    }

    /// Stops the thread and returns the figures for the window.
    pub fn finish(mut self) -> ServerStats {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let (Some(a), Some(b)) = (self.start, self.end) else {
            return ServerStats::default();
        };
        let tick = clock_ticks_per_second();
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let cpu_user_s = b.user_ticks.saturating_sub(a.user_ticks) as f64 / tick;
        let cpu_sys_s = b.sys_ticks.saturating_sub(a.sys_ticks) as f64 / tick;
        let precise = b.cpu_ns.saturating_sub(a.cpu_ns) as f64 / 1e9;
        let cpu_total_s = if precise == 0.0 {
            cpu_user_s + cpu_sys_s
        } else if st.peak_procs > 1 {
            precise.max(cpu_user_s + cpu_sys_s)
        } else {
            precise
        };
        ServerStats {
            cpu_user_s,
            cpu_sys_s,
            cpu_total_s,
            ctx_voluntary: b.voluntary.saturating_sub(a.voluntary),
            ctx_involuntary: b.involuntary.saturating_sub(a.involuntary),
            peak_rss_bytes: st.peak_rss,
            threads: st.peak_threads,
            processes: st.peak_procs,
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn clock_ticks_per_second() -> f64 {
    use nix::unistd::{SysconfVar, sysconf};
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

/// The fields of `/proc/<pid>/stat` we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Process id.
    pub pid: i32,
    /// Parent process id.
    pub ppid: i32,
    /// User ticks.
    pub utime: u64,
    /// System ticks.
    pub stime: u64,
    /// User ticks of reaped children.
    pub cutime: u64,
    /// System ticks of reaped children.
    pub cstime: u64,
    /// Threads in the process.
    pub threads: u64,
}

/// Parses one `/proc/<pid>/stat` line. The command name is in parentheses
/// and may itself contain spaces and parentheses, so fields are counted
/// from the last `)`.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let (head, tail) = line.rsplit_once(')')?;
    let pid = head.split_once('(')?.0.trim().parse().ok()?;
    // tail starts at field 3 (state); field n is at index n - 3.
    let f: Vec<&str> = tail.split_whitespace().collect();
    let num = |n: usize| f.get(n - 3)?.parse::<i64>().ok();
    Some(Stat {
        pid,
        ppid: num(4)? as i32,
        utime: num(14)? as u64,
        stime: num(15)? as u64,
        cutime: num(16)?.max(0) as u64,
        cstime: num(17)?.max(0) as u64,
        threads: num(20)?.max(0) as u64,
    })
}

/// Reads a `Key:   value` line of a `/proc` status file.
pub fn status_field(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// A process's CPU time in nanoseconds, all its threads included, read
/// from its CPU-time clock; `None` if it is gone or not ours to read.
fn process_cpu_ns(pid: i32) -> Option<u64> {
    use nix::time::{clock_getcpuclockid, clock_gettime};
    let clock = clock_getcpuclockid(nix::unistd::Pid::from_raw(pid)).ok()?;
    let t = clock_gettime(clock).ok()?;
    Some(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

/// The root and its live descendants.
fn tree(root: i32) -> Vec<Stat> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let all: Vec<Stat> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?))
        .collect();
    let mut members: Vec<Stat> = all.iter().filter(|s| s.pid == root).copied().collect();
    let mut i = 0;
    while i < members.len() {
        let parent = members[i].pid;
        members.extend(all.iter().filter(|s| s.ppid == parent && s.pid != root));
        i += 1;
    }
    members
}

fn sample(root: i32, state: &Mutex<State>) -> Snapshot {
    let members = tree(root);
    let mut snap = Snapshot::default();
    let mut rss = 0;
    let mut threads = 0;
    let mut per_thread = Vec::new();
    let mut on_cpu = Vec::new();
    for s in &members {
        snap.user_ticks += s.utime;
        snap.sys_ticks += s.stime;
        if s.pid == root {
            snap.user_ticks += s.cutime;
            snap.sys_ticks += s.cstime;
        }
        threads += s.threads;
        if let Some(ns) = process_cpu_ns(s.pid) {
            on_cpu.push((s.pid, ns));
        }
        if let Ok(st) = fs::read_to_string(format!("/proc/{}/status", s.pid)) {
            rss += status_field(&st, "VmRSS").unwrap_or(0) * 1024;
        }
        let Ok(tasks) = fs::read_dir(format!("/proc/{}/task", s.pid)) else {
            continue;
        };
        for t in tasks.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            if let Ok(st) = fs::read_to_string(format!("/proc/{}/task/{tid}/status", s.pid)) {
                let v = status_field(&st, "voluntary_ctxt_switches").unwrap_or(0);
                let n = status_field(&st, "nonvoluntary_ctxt_switches").unwrap_or(0);
                per_thread.push(((s.pid, tid), (v, n)));
            }
        }
    }
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    for (key, (v, n)) in per_thread {
        let e = st.ctx.entry(key).or_default();
        e.0 = e.0.max(v);
        e.1 = e.1.max(n);
    }
    for (key, ns) in on_cpu {
        let e = st.cpu_ns.entry(key).or_default();
        *e = (*e).max(ns);
    }
    snap.cpu_ns = st.cpu_ns.values().sum();
    snap.voluntary = st.ctx.values().map(|c| c.0).sum();
    snap.involuntary = st.ctx.values().map(|c| c.1).sum();
    st.peak_rss = st.peak_rss.max(rss);
    st.peak_threads = st.peak_threads.max(threads);
    st.peak_procs = st.peak_procs.max(members.len() as u64);
    snap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_awkward_command_name() {
        let line = "4242 (echo (x) y) S 17 4242 17 0 -1 4194560 120 0 0 0 \
                    33 44 5 6 20 0 3 0 12345 1000000 200 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            s,
            Stat {
                pid: 4242,
                ppid: 17,
                utime: 33,
                stime: 44,
                cutime: 5,
                cstime: 6,
                threads: 3
            }
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_fields() {
        let st = "Name:\tx\nVmRSS:\t    1234 kB\nvoluntary_ctxt_switches:\t7\n\
                  nonvoluntary_ctxt_switches:\t9\n";
        assert_eq!(status_field(st, "VmRSS"), Some(1234));
        assert_eq!(status_field(st, "voluntary_ctxt_switches"), Some(7));
        assert_eq!(status_field(st, "nonvoluntary_ctxt_switches"), Some(9));
        assert_eq!(status_field(st, "VmSwap"), None);
    }

    #[test]
    fn samples_this_process_and_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep exists");
        let me = std::process::id();
        let members = tree(me as i32);
        assert_eq!(members[0].pid, me as i32);
        assert!(members.iter().any(|s| s.pid == child.id() as i32));
        let mut s = Sampler::start(me);
        s.mark_start();
        // Burn a little CPU so the window is not empty of work.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i) ^ (x >> 3);
        }
        std::hint::black_box(x);
        s.mark_end();
        let stats = s.finish();
        let _ = child.kill();
        let _ = child.wait();
        assert!(stats.processes >= 2, "{stats:?}");
        assert!(stats.threads >= 2, "{stats:?}");
        assert!(stats.peak_rss_bytes > 0, "{stats:?}");
        // The loop above ran on this process's CPU time: the precise total
        // must have seen it.
        assert!(stats.cpu_total_s > 0.0, "{stats:?}");
    }
}
