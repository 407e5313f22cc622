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
//! Either way, context switches, threads and processes come from `/proc`
//! for the tasks present at the edges: a task that exits in the window
//! takes its switches with it, so those are lower bounds.

use std::collections::HashMap;

use echo_conformance::ServerProcess;
use echo_conformance::tree;

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
                 context switches and processes are read from /proc at the window's edges, \
                 lower bounds for tasks that exit in the window"
            }
            Method::Proc => {
                "no cgroup: server CPU is the live processes' CPU clocks plus the root's reaped \
                 children, read at the window's edges: it misses auto-reaped and reparented \
                 children and those that start and end in the window; memory is the summed \
                 PSS at the edges; context switches, threads and processes are read at the \
                 edges, lower bounds"
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
    /// Voluntary context switches (blocking waits), a lower bound.
    pub ctx_voluntary: u64,
    /// Involuntary context switches (preemptions), a lower bound.
    pub ctx_involuntary: u64,
    /// True when tasks exited in the window, so that the switch counts
    /// above miss theirs (thread-per-client's threads end with their
    /// connections, before the window's end is read).
    pub ctx_lower_bound: bool,
    /// Peak memory in bytes: the cgroup's charge peak, or the largest
    /// summed PSS at the edges.
    pub peak_memory_bytes: u64,
    /// Most threads (tasks) at once over all processes.
    pub threads: u64,
    /// Most processes seen at the edges.
    pub processes: u64,
}

/// One reading at a window edge.
#[derive(Debug, Clone, Default)]
struct Edge {
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
}

impl Meter {
    /// A meter for a server spawned for `method` (into a cgroup for the
    /// cgroup methods).
    pub fn new(method: Method) -> Meter {
        Meter {
            method,
            start: None,
            end: None,
            peak_memory: None,
            peak_tasks: None,
        }
    }

    /// The window opens. The slow `/proc` reads come first and the CPU
    /// counters last, so the CPU interval starts as close as possible to
    /// the load's first message.
    pub fn mark_start(&mut self, server: &mut ServerProcess) {
        let mut edge = Edge::default();
        self.read_tasks(server, &mut edge);
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
        self.read_tasks(server, &mut edge);
        self.end = Some(edge);
    }

    /// Live processes of the server now: the cgroup's, or the `/proc` tree.
    fn processes(server: &ServerProcess) -> Vec<u32> {
        match server.cgroup() {
            Some(cg) => cg.procs(),
            None => tree::pids(server.pid()),
        }
    }

    fn read_tasks(&self, server: &ServerProcess, edge: &mut Edge) {
        let pids = Meter::processes(server);
        edge.processes = pids.len() as u64;
        for &pid in &pids {
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
        // threads born in the window; threads that died in it are lost.
        let (mut vol, mut invol) = (0, 0);
        for (tid, (v, n)) in &b.switches {
            let (v0, n0) = a.switches.get(tid).copied().unwrap_or((0, 0));
            vol += v.saturating_sub(v0);
            invol += n.saturating_sub(n0);
        }
        let cgroup = self.method != Method::Proc;
        let exited = a.switches.keys().any(|tid| !b.switches.contains_key(tid))
            || self
                .peak_tasks
                .is_some_and(|peak| peak > b.switches.len() as u64);
        Some(ServerStats {
            method: self.method,
            cpu_user_s: s(b.user_ns.saturating_sub(a.user_ns)),
            cpu_sys_s: s(b.sys_ns.saturating_sub(a.sys_ns)),
            cpu_total_s: s(b.cpu_ns.saturating_sub(a.cpu_ns)),
            ctx_voluntary: vol,
            ctx_involuntary: invol,
            ctx_lower_bound: exited,
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
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_count_threads_born_in_the_window_and_not_the_dead() {
        let mut m = Meter::new(Method::Proc);
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
        assert!(s.ctx_lower_bound, "thread 2 died in the window");
        assert_eq!(s.cpu_total_s, 3.0);
        assert_eq!(s.peak_memory_bytes, 9);
        assert_eq!((s.threads, s.processes), (2, 1));
        assert_eq!(Meter::new(Method::Proc).finish(), None);
    }
}
