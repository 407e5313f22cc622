//! Measuring a server's whole process tree over the load's window, from
//! counters read at the window's start and end: no thread samples while
//! the load runs, so the load generator's CPU is the load's alone.
//!
//! Two ways, the first that works is used and named in every report:
//! - A cgroup per repetition ([`echo_conformance::cgroup`], v2 or v1): the
//!   server joins it before `exec`, so the kernel charges it and everything
//!   it forks. CPU is `cpuacct.usage` (v1) or `cpu.stat usage_usec` (v2),
//!   nanoseconds or microseconds, every task included: children that exit
//!   in the window, children reaped automatically, reparented ones. Memory
//!   is the group's charge peak (`memory.max_usage_in_bytes` reset at the
//!   start, or `memory.peak`): a page shared copy-on-write by N children is
//!   charged once; kernel memory (page tables, stacks) is in it too, so it
//!   is somewhat above a resident set size. Peak tasks is `pids.peak`
//!   (threads of every process; since the server started).
//! - The `/proc` tree ([`echo_conformance::tree`]) when no cgroup can be
//!   made (not root, not mounted): CPU is each live process's CPU clock
//!   (`clock_getcpuclockid(3)`) plus what the root reaped (`cutime +
//!   cstime`), which misses children reaped automatically (`SIGCHLD`
//!   ignored) or reparented, and children that both start and end inside
//!   the window; memory is the proportional set size (`Pss`), read at the
//!   two edges only, so a peak between them is missed.
//!
//! Either way, threads and processes come from `/proc` for the tasks
//! present at the edges. Context switches are those tasks' `/proc` counts
//! (end minus start) plus, for each task of the tree that exits inside the
//! window, the count in the kernel's taskstats exit record
//! ([`crate::exits`], minus its start count): exact, with nothing of ours
//! running during the window. Where taskstats is refused (not root, a pid
//! namespace) or its buffer overflowed, the exited tasks' switches are
//! missing and the counts are flagged as lower bounds.

use std::collections::{HashMap, HashSet};
use std::sync::Once;

use echo_conformance::ServerProcess;
use echo_conformance::tree;

use crate::exits::{self, ExitListener, ExitRecord};

/// How a repetition's server figures were obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A cgroup v2 group per repetition.
    CgroupV2,
    /// cgroup v1 groups (cpuacct, memory, pids) per repetition.
    CgroupV1,
    /// The `/proc` tree, read at the window's edges.
    Proc,
}

impl Method {
    /// Short name used in JSON and tables: `cgroup-v2`, `cgroup-v1`, `proc`.
    pub fn name(self) -> &'static str {
        match self {
            Method::CgroupV2 => "cgroup-v2",
            Method::CgroupV1 => "cgroup-v1",
            Method::Proc => "proc",
        }
    }

    /// What the figures mean under this method, in one sentence.
    pub fn note(self) -> &'static str {
        match self {
            Method::CgroupV2 | Method::CgroupV1 => {
                "server CPU and peak memory are exact for the whole process tree (a cgroup per \
                 repetition: every task, exited and auto-reaped ones included; shared pages \
                 charged once; memory includes kernel memory such as page tables, and excludes \
                 file pages, such as the binary's, that others brought into the page cache, so \
                 a small server shows less than its RSS); the user/system split is the \
                 kernel's tick-sampled one and need not add up to the total; peak tasks is pids.peak; \
                 processes are read from /proc at the window's edges; context switches are \
                 /proc's at the edges plus the taskstats exit records of tasks that exit in the \
                 window (exact; lower bounds where taskstats is refused, as ctx_source says)"
            }
            Method::Proc => {
                "no cgroup: server CPU is the live processes' CPU clocks plus the root's reaped \
                 children, read at the window's edges: it misses auto-reaped and reparented \
                 children and those that start and end in the window; memory is the summed \
                 PSS at the edges; threads and processes are read at the edges; context \
                 switches are /proc's at the edges plus the taskstats exit records of tasks \
                 that exit in the window (exact; lower bounds where taskstats is refused, as \
                 ctx_source says)"
            }
        }
    }
}

/// What the tree used over a measured window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerStats {
    /// How these were measured.
    pub method: Method,
    /// User CPU seconds. Sampled at clock ticks by the kernel (cgroup) or
    /// in ticks (`/proc`): a coarse split, not a part of the total.
    pub cpu_user_s: f64,
    /// System CPU seconds, as coarse as the user figure.
    pub cpu_sys_s: f64,
    /// Total CPU seconds (nanosecond counters); what the CPU cost per echo
    /// is computed from.
    pub cpu_total_s: f64,
    /// Voluntary context switches (blocking waits).
    pub ctx_voluntary: u64,
    /// Involuntary context switches (preemptions).
    pub ctx_involuntary: u64,
    /// Where the switch counts came from.
    pub ctx_source: CtxSource,
    /// True when tasks exited in the window and their switches could not
    /// all be had (no taskstats, or its buffer overflowed), so that the
    /// counts above miss some (thread-per-client's threads end with their
    /// connections, before the window's end is read).
    pub ctx_lower_bound: bool,
    /// Peak memory in bytes: the cgroup's charge peak, or the largest
    /// summed PSS at the edges.
    pub peak_memory_bytes: u64,
    /// Most threads (tasks) at once over all processes.
    pub threads: u64,
    /// Most processes seen at the edges.
    pub processes: u64,
    /// Zombie children in the tree once the last client had gone and the
    /// server had had [`ZOMBIE_SETTLE`](crate::run::ZOMBIE_SETTLE) to reap
    /// them (read after the window, outside it); `None` if not read.
    pub zombies_after: Option<u64>,
    /// Processes of the server's group or cgroup that outlived it after
    /// SIGTERM; `None` if not read.
    pub left_behind: Option<u64>,
}

/// How context switches were obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtxSource {
    /// `/proc` at the edges plus the taskstats records of tasks that
    /// exited in the window.
    ExitRecords,
    /// `/proc` at the edges only: taskstats was refused.
    Edges,
}

impl CtxSource {
    /// Short name used in JSON: `proc-edges+taskstats` or `proc-edges`.
    pub fn name(self) -> &'static str {
        match self {
            CtxSource::ExitRecords => "proc-edges+taskstats",
            CtxSource::Edges => "proc-edges",
        }
    }
}

/// One reading at a window edge.
#[derive(Debug, Clone, Default)]
struct Edge {
    /// The processes read.
    pids: Vec<u32>,
    cpu_ns: u64,
    user_ns: u64,
    sys_ns: u64,
    /// tid -> (voluntary, involuntary).
    switches: HashMap<u32, (u64, u64)>,
    threads: u64,
    processes: u64,
    /// Fallback only: summed PSS.
    pss: u64,
}

/// Reads a server's counters at the window's edges.
pub struct Meter {
    method: Method,
    start: Option<Edge>,
    end: Option<Edge>,
    /// Cgroup only: the charge peak and `pids.peak` read at the end.
    peak_memory: Option<u64>,
    peak_tasks: Option<u64>,
    /// Exit records, or why there are none.
    exits: Result<ExitListener, String>,
    /// Records drained since the window's start edge was read.
    records: Vec<ExitRecord>,
    /// Some exits in the window went unrecorded.
    records_lost: bool,
}

/// The taskstats refusal is the same for every repetition: said once.
static REFUSED: Once = Once::new();

impl Meter {
    /// A meter for a server spawned for `method` (into a cgroup for the
    /// cgroup methods) and running on `server_cpus` (a kernel CPU list):
    /// only exits on those CPUs are recorded, so that the rest of the
    /// machine's exits do not fill the buffer.
    pub fn new(method: Method, server_cpus: &str) -> Meter {
        let exits = ExitListener::open(server_cpus);
        if let Err(why) = &exits {
            REFUSED.call_once(|| {
                eprintln!(
                    "warning: {why}; context switches of tasks that exit in the window are \
                     not counted (lower bounds)"
                )
            });
        }
        Meter {
            method,
            start: None,
            end: None,
            peak_memory: None,
            peak_tasks: None,
            exits,
            records: Vec::new(),
            records_lost: false,
        }
    }

    /// The window opens. The slow `/proc` reads come first and the CPU
    /// counters last, so the CPU interval starts as close as possible to
    /// the load's first message.
    pub fn mark_start(&mut self, server: &mut ServerProcess) {
        let mut edge = Edge::default();
        self.start_tasks(&Meter::processes(server), &mut edge);
        if let Some(cg) = server.cgroup_mut() {
            if let Err(e) = cg.reset_memory_peak() {
                eprintln!("warning: {e}; the memory peak covers the server's whole life");
            }
            if let Some(c) = cg.cpu() {
                (edge.cpu_ns, edge.user_ns, edge.sys_ns) = (c.total_ns, c.user_ns, c.system_ns);
            }
        } else {
            self.read_tree_cpu(server.pid(), &mut edge);
        }
        self.start = Some(edge);
    }

    /// The window closes: CPU first, then the rest.
    pub fn mark_end(&mut self, server: &ServerProcess) {
        let mut edge = Edge::default();
        if let Some(cg) = server.cgroup() {
            if let Some(c) = cg.cpu() {
                (edge.cpu_ns, edge.user_ns, edge.sys_ns) = (c.total_ns, c.user_ns, c.system_ns);
            }
            self.peak_memory = cg.memory_peak();
            self.peak_tasks = cg.tasks_peak();
        } else {
            self.read_tree_cpu(server.pid(), &mut edge);
        }
        self.end_tasks(&Meter::processes(server), &mut edge);
        self.end = Some(edge);
    }

    /// The start edge's tasks, then the exits queued so far: those of
    /// tasks read just now are kept (they died after their reading), the
    /// others died before the window and are dropped.
    fn start_tasks(&mut self, pids: &[u32], edge: &mut Edge) {
        self.read_tasks(pids, edge);
        if let Ok(l) = &mut self.exits {
            let d = l.drain();
            self.records = d
                .records
                .into_iter()
                .filter(|r| edge.switches.contains_key(&r.tid))
                .collect();
        }
    }

    /// The end edge's tasks, then every exit queued since the start:
    /// each task that died before the reading has its record queued by
    /// then (the kernel sends it from the task's own exit path).
    fn end_tasks(&mut self, pids: &[u32], edge: &mut Edge) {
        self.read_tasks(pids, edge);
        if let Ok(l) = &mut self.exits {
            let d = l.drain();
            self.records.extend(d.records);
            self.records_lost |= d.lost;
        }
    }

    /// Live processes of the server now: the cgroup's, or the `/proc` tree.
    fn processes(server: &ServerProcess) -> Vec<u32> {
        match server.cgroup() {
            Some(cg) => cg.procs(),
            None => tree::pids(server.pid()),
        }
    }

    fn read_tasks(&self, pids: &[u32], edge: &mut Edge) {
        edge.pids = pids.to_vec();
        edge.processes = pids.len() as u64;
        for &pid in pids {
            let tasks = tree::task_switches(pid);
            edge.threads += tasks.len() as u64;
            for (tid, v, n) in tasks {
                edge.switches.insert(tid, (v, n));
            }
            if self.method == Method::Proc {
                edge.pss += tree::process_pss_bytes(pid).unwrap_or(0);
            }
        }
    }

    /// The fallback's CPU: live processes' CPU clocks (ns) and ticks for
    /// the user/system split, plus the root's reaped children.
    fn read_tree_cpu(&self, root: u32, edge: &mut Edge) {
        let members = tree::members(root);
        let Some(first) = members.first() else {
            return;
        };
        let tick_ns = 1_000_000_000 / tree::clock_ticks_per_second();
        let live: u64 = members
            .iter()
            .filter_map(|s| tree::process_cpu_ns(s.pid))
            .sum();
        edge.cpu_ns = live + (first.cutime + first.cstime) * tick_ns;
        edge.user_ns = (members.iter().map(|s| s.utime).sum::<u64>() + first.cutime) * tick_ns;
        edge.sys_ns = (members.iter().map(|s| s.stime).sum::<u64>() + first.cstime) * tick_ns;
    }

    /// The figures for the window; `None` if an edge was never read (the
    /// load failed before its window opened).
    pub fn finish(self) -> Option<ServerStats> {
        let (a, b) = (self.start?, self.end?);
        let s = |ns: u64| ns as f64 / 1e9;
        // Switches per thread present at both edges, plus all of those of
        // threads born in the window; then those of threads that died in
        // it, from their exit records (a record of a thread still read at
        // the end edge died after it, and is already counted).
        let (mut vol, mut invol) = (0, 0);
        let mut add = |tid: &u32, v: u64, n: u64| {
            let (v0, n0) = a.switches.get(tid).copied().unwrap_or((0, 0));
            vol += v.saturating_sub(v0);
            invol += n.saturating_sub(n0);
        };
        for (tid, (v, n)) in &b.switches {
            add(tid, *v, *n);
        }
        let known: HashSet<u32> = a.pids.iter().chain(&b.pids).copied().collect();
        let mut seen = HashSet::new();
        for r in exits::of_tree(&self.records, &known) {
            if !b.switches.contains_key(&r.tid) && seen.insert(r.tid) {
                add(&r.tid, r.voluntary, r.involuntary);
            }
        }
        let cgroup = self.method != Method::Proc;
        let exited = a.switches.keys().any(|tid| !b.switches.contains_key(tid))
            || self
                .peak_tasks
                .is_some_and(|peak| peak > b.switches.len() as u64);
        let ctx_source = match self.exits {
            Ok(_) => CtxSource::ExitRecords,
            Err(_) => CtxSource::Edges,
        };
        Some(ServerStats {
            method: self.method,
            cpu_user_s: s(b.user_ns.saturating_sub(a.user_ns)),
            cpu_sys_s: s(b.sys_ns.saturating_sub(a.sys_ns)),
            cpu_total_s: s(b.cpu_ns.saturating_sub(a.cpu_ns)),
            ctx_voluntary: vol,
            ctx_involuntary: invol,
            ctx_source,
            ctx_lower_bound: exited && (ctx_source == CtxSource::Edges || self.records_lost),
            peak_memory_bytes: if cgroup {
                self.peak_memory.unwrap_or(0)
            } else {
                a.pss.max(b.pss)
            },
            threads: match (cgroup, self.peak_tasks) {
                (true, Some(t)) => t,
                _ => a.threads.max(b.threads),
            },
            processes: a.processes.max(b.processes),
            zombies_after: None,
            left_behind: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// A meter whose exit records are refused, as without root.
    fn edges_only() -> Meter {
        let mut m = Meter::new(Method::Proc, "0");
        m.exits = Err("refused for the test".into());
        m
    }

    #[test]
    fn switches_count_threads_born_in_the_window_and_not_the_dead() {
        let mut m = edges_only();
        let mut a = Edge::default();
        a.switches.insert(1, (10, 1));
        a.switches.insert(2, (5, 5)); // dies in the window
        let mut b = Edge {
            cpu_ns: 3_000_000_000,
            pss: 7,
            threads: 2,
            processes: 1,
            ..Edge::default()
        };
        b.switches.insert(1, (15, 2));
        b.switches.insert(3, (4, 0)); // born in the window
        a.pss = 9;
        m.start = Some(a);
        m.end = Some(b);
        let s = m.finish().unwrap();
        assert_eq!((s.ctx_voluntary, s.ctx_involuntary), (9, 1));
        assert_eq!(s.ctx_source, CtxSource::Edges);
        assert!(s.ctx_lower_bound, "thread 2 died in the window");
        assert_eq!(s.cpu_total_s, 3.0);
        assert_eq!(s.peak_memory_bytes, 9);
        assert_eq!((s.threads, s.processes), (2, 1));
        assert_eq!(edges_only().finish(), None);
    }

    #[test]
    fn exit_records_add_the_dead_minus_their_start_and_skip_the_living() {
        let mut m = edges_only();
        m.exits = Ok(match ExitListener::open("0") {
            Ok(l) => l,
            Err(why) => {
                eprintln!("taskstats not available ({why}): exact counts not checked");
                return;
            }
        });
        let rec = |tid, tgid, ppid, voluntary| ExitRecord {
            tid,
            tgid,
            ppid,
            voluntary,
            involuntary: 0,
        };
        let mut a = Edge {
            pids: vec![100],
            ..Edge::default()
        };
        a.switches.insert(100, (10, 0));
        a.switches.insert(101, (5, 0)); // dies in the window
        let mut b = Edge {
            pids: vec![100],
            ..Edge::default()
        };
        b.switches.insert(100, (20, 0));
        m.records = vec![
            rec(101, 100, 1, 50),   // 45 in the window
            rec(200, 200, 100, 7),  // a child born and dead in the window
            rec(100, 100, 1, 99),   // died after the end edge read it
            rec(300, 300, 1, 1000), // not the server's
        ];
        m.start = Some(a);
        m.end = Some(b);
        let s = m.finish().unwrap();
        assert_eq!(s.ctx_voluntary, 10 + 45 + 7);
        assert_eq!(s.ctx_source, CtxSource::ExitRecords);
        assert!(!s.ctx_lower_bound);
    }

    /// Set in the child that [`a_thread_that_exits_in_the_window_is_counted`]
    /// runs: it is this test binary again, running [`switching_child`] only.
    const CHILD_ENV: &str = "ECHO_BENCH_SWITCHING_CHILD";

    /// In the child: on a line from stdin, a thread blocks 100 times, prints
    /// the voluntary switches it counted itself, and exits; then so does
    /// the process. Elsewhere it does nothing.
    #[test]
    fn switching_child() {
        if std::env::var_os(CHILD_ENV).is_none() {
            return;
        }
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).unwrap();
        let own = std::thread::spawn(|| {
            for _ in 0..100 {
                std::thread::sleep(Duration::from_millis(1));
            }
            let st = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            tree::status_field(&st, "voluntary_ctxt_switches").unwrap()
        })
        .join()
        .unwrap();
        // After libtest's "test ... " prefix, which ends no line.
        println!("\nswitches {own}");
    }

    #[test]
    fn a_thread_that_exits_in_the_window_is_counted() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "proc::tests::switching_child", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(CHILD_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut m = Meter::new(Method::Proc, &exits::possible_cpus());
        let mut a = Edge::default();
        m.start_tasks(&[pid], &mut a);
        m.start = Some(a);
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the switching child did not exit within 30 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut b = Edge::default();
        m.end_tasks(&[pid], &mut b);
        m.end = Some(b);
        let own: u64 = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("switches ")?.parse().ok())
            .expect("the child printed its switches");
        assert!(own > 0, "100 sleeps of 1 ms made no voluntary switch");
        let s = m.finish().unwrap();
        match s.ctx_source {
            CtxSource::ExitRecords => assert!(
                s.ctx_voluntary >= own,
                "counted {} voluntary switches, the exited thread alone made {own}",
                s.ctx_voluntary
            ),
            CtxSource::Edges => assert!(s.ctx_lower_bound, "the child's tasks all exited"),
        }
    }
}
