//! A server's process tree, read from `/proc` (Linux only): which processes
//! it has, and what they hold (descriptors, threads, zombie children,
//! memory, CPU time).
//!
//! This is the one place that walks `/proc`: the suite uses it to see leaks
//! and crashes, the harness (`echo-bench run`) to read context switches at
//! the edges of its window and to measure a whole tree when no cgroup is
//! available ([`crate::cgroup`] is the exact way).
//!
//! Descendants are found through the parent pid in `/proc/<pid>/stat`, so a
//! process that a server double-forked away (reparented to init) is no
//! longer part of its tree: only a cgroup sees those. Memory is the
//! proportional set size (`Pss` in `/proc/<pid>/smaps_rollup`): a page
//! shared by N processes counts 1/N in each, so a forked tree that shares
//! its parent's pages is not counted N times over, as summing `VmRSS` would.

use std::collections::HashMap;
use std::fs;

/// The fields of `/proc/<pid>/stat` the workspace uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Process id.
    pub pid: u32,
    /// One-letter state: `R`, `S`, `D`, `Z` (zombie), `T`...
    pub state: char,
    /// Parent process id.
    pub ppid: u32,
    /// Process group id.
    pub pgrp: u32,
    /// User CPU, clock ticks.
    pub utime: u64,
    /// System CPU, clock ticks.
    pub stime: u64,
    /// User CPU of reaped children, clock ticks.
    pub cutime: u64,
    /// System CPU of reaped children, clock ticks.
    pub cstime: u64,
    /// Threads in the process.
    pub threads: u64,
}

/// Parses one `/proc/<pid>/stat` line. The command name, second field, is in
/// parentheses and may itself hold spaces and parentheses, so fields are
/// counted from the last `)`.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let (head, tail) = line.rsplit_once(')')?;
    let pid = head.split_once('(')?.0.trim().parse().ok()?;
    // tail starts at field 3 (state); field n is at index n - 3.
    let f: Vec<&str> = tail.split_whitespace().collect();
    let num = |n: usize| f.get(n - 3)?.parse::<i64>().ok();
    Some(Stat {
        pid,
        state: f.first()?.chars().next()?,
        ppid: u32::try_from(num(4)?).ok()?,
        pgrp: u32::try_from(num(5)?).ok()?,
        utime: num(14)?.max(0) as u64,
        stime: num(15)?.max(0) as u64,
        cutime: num(16)?.max(0) as u64,
        cstime: num(17)?.max(0) as u64,
        threads: num(20)?.max(0) as u64,
    })
}

/// `/proc/<pid>/stat`, parsed; `None` once the process is gone.
pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `root` and its descendants (zombies included), `root` first; empty if
/// `root` is gone.
pub fn members(root: u32) -> Vec<Stat> {
    let mut by_parent: HashMap<u32, Vec<Stat>> = HashMap::new();
    let mut me = None;
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            // Processes come and go while we scan: a vanished one is skipped.
            let Some(s) = stat(pid) else { continue };
            if pid == root {
                me = Some(s);
            } else {
                by_parent.entry(s.ppid).or_default().push(s);
            }
        }
    }
    let Some(me) = me else { return Vec::new() };
    let mut tree = vec![me];
    let mut next = 0;
    while next < tree.len() {
        if let Some(kids) = by_parent.remove(&tree[next].pid) {
            tree.extend(kids);
        }
        next += 1;
    }
    tree
}

/// Every process in process group `pgid`, zombies included: what a
/// server's group still holds, whoever its parents are now (a child
/// orphaned by the server's exit has been reparented but keeps its group).
pub fn group(pgid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat(pid).is_some_and(|s| s.pgrp == pgid))
        .collect()
}

/// The pids of `root` and its descendants, `root` first.
pub fn pids(root: u32) -> Vec<u32> {
    members(root).into_iter().map(|s| s.pid).collect()
}

/// What a tree holds at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Processes, zombies included.
    pub processes: u64,
    /// Threads over all live processes.
    pub threads: u64,
    /// Open descriptors over all live processes.
    pub fds: u64,
    /// Children that exited and were not reaped (state `Z`).
    pub zombies: u64,
}

/// Counts for `root`'s tree; `None` if `root` is gone or is itself a zombie.
pub fn counts(root: u32) -> Option<Counts> {
    let members = members(root);
    let first = members.first()?;
    if first.state == 'Z' {
        return None;
    }
    let mut c = Counts::default();
    for s in &members {
        c.processes += 1;
        if s.state == 'Z' {
            c.zombies += 1;
            continue;
        }
        c.threads += s.threads;
        c.fds += fs::read_dir(format!("/proc/{}/fd", s.pid)).map_or(0, |d| d.count() as u64);
    }
    Some(c)
}

/// True while `pid` exists and has not exited (a zombie has exited).
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z')
}

/// Reads a `Key:   value` line of a `/proc` status-like file (the first
/// number after the colon).
pub fn status_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Proportional set size of one process in bytes; `None` if it is gone or
/// has no memory (a zombie).
pub fn process_pss_bytes(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    Some(status_field(&text, "Pss")? * 1024)
}

/// `VmRSS` of one process in bytes; `None` if it is gone or a zombie.
pub fn process_rss_bytes(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(status_field(&text, "VmRSS")? * 1024)
}

/// Sum of the proportional set sizes over `root`'s tree, in bytes: shared
/// and copy-on-write pages count once over the tree. `None` if `root`
/// itself cannot be read.
pub fn pss_bytes(root: u32) -> Option<u64> {
    let pids = pids(root);
    let (first, rest) = pids.split_first()?;
    let own = process_pss_bytes(*first)?;
    Some(
        own + rest
            .iter()
            .filter_map(|&p| process_pss_bytes(p))
            .sum::<u64>(),
    )
}

/// A process's CPU time in nanoseconds, all its threads included (live or
/// exited), read from its CPU-time clock; `None` if it is gone.
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    use nix::time::{clock_getcpuclockid, clock_gettime};
    let clock = clock_getcpuclockid(nix::unistd::Pid::from_raw(pid as i32)).ok()?;
    let t = clock_gettime(clock).ok()?;
    Some(t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
}

/// CPU time of `root`'s tree in nanoseconds: every live process's CPU clock,
/// plus what `root`'s reaped children used (`cutime + cstime`, in clock
/// ticks). A child that exits between two readings and is not yet reaped
/// is missed; for "is it spinning?" over a second that does not matter,
/// for exact accounting use a cgroup.
pub fn cpu_ns(root: u32) -> Option<u64> {
    let members = members(root);
    let first = members.first()?;
    let reaped = (first.cutime + first.cstime) * 1_000_000_000 / clock_ticks_per_second();
    let live: u64 = members.iter().filter_map(|s| process_cpu_ns(s.pid)).sum();
    Some(live + reaped)
}

/// `sysconf(_SC_CLK_TCK)`, the unit of the tick fields of `/proc/<pid>/stat`.
pub fn clock_ticks_per_second() -> u64 {
    use nix::unistd::{SysconfVar, sysconf};
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as u64,
        _ => 100,
    }
}

/// Context switches of each live thread of `pid`, as `(tid, voluntary,
/// involuntary)`, from `/proc/<pid>/task/<tid>/status`; empty once it is
/// gone. A thread that has exited is no longer listed: its switches are lost.
pub fn task_switches(pid: u32) -> Vec<(u32, u64, u64)> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let tid: u32 = t.file_name().to_str()?.parse().ok()?;
            let st = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
            Some((
                tid,
                status_field(&st, "voluntary_ctxt_switches")?,
                status_field(&st, "nonvoluntary_ctxt_switches")?,
            ))
        })
        .collect()
}

/// The soft open-files limit of `pid`, from `/proc/<pid>/limits`; `None`
/// if unreadable or unlimited.
pub fn nofile_soft_limit(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// How `pid` ended, as the end of a sentence: "was killed by SIGPIPE",
/// "exited with status 101", or "is gone" when that cannot be told.
///
/// Only the parent can learn a child's status. This asks with
/// `waitid(2)` and `WNOWAIT`, which reads the status without reaping, so
/// the parent's own `wait` (a `ServerProcess`) still gets it; for a server
/// that is not our child `waitid` fails with `ECHILD` and the answer is
/// "is gone". The alternative, `waitpid(2)`, would reap it behind its
/// owner's back.
///
/// A multi-threaded process shows as a zombie as soon as its main thread
/// has exited, while its other threads are still on their way out, and
/// `waitid` reports it only once they are all gone: so this asks again for
/// up to half a second while the answer is "not yet".
pub fn describe_end(pid: u32) -> String {
    use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::WNOHANG;
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
    loop {
        match waitid(Id::Pid(nix::unistd::Pid::from_raw(pid as i32)), flags) {
            Ok(WaitStatus::Signaled(_, signal, _)) => return format!("was killed by {signal}"),
            Ok(WaitStatus::Exited(_, code)) => return format!("exited with status {code}"),
            Ok(WaitStatus::StillAlive) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            _ if alive(pid) => return "is alive".to_string(),
            _ => return "is gone".to_string(),
        }
    }
}

/// Whether process `pid` holds a TCP socket listening on `addr`'s port
/// (on `addr`'s address or on the wildcard): the sockets in LISTEN state
/// (`0A`) of `/proc/net/tcp` and `/proc/net/tcp6` matched by inode against
/// the `socket:[inode]` links in `/proc/<pid>/fd`. `None` when either side
/// cannot be read (the process is gone, or not ours to inspect).
///
/// The harness asks before it trusts a pid it was given for an address:
/// the fault suite sends that pid SIGTERM.
pub fn listens_on(pid: u32, addr: std::net::SocketAddr) -> Option<bool> {
    let mut inodes = std::collections::HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        inodes.extend(
            text.lines()
                .skip(1)
                .filter_map(|line| listening_inode(line, addr)),
        );
    }
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(fds.flatten().any(|fd| {
        fs::read_link(fd.path()).ok().is_some_and(|target| {
            target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|inode| inodes.contains(&inode))
        })
    }))
}

/// The inode of one `/proc/net/tcp{,6}` line if it is a listener on
/// `addr`'s port, bound to `addr`'s address or to the wildcard. Fields:
/// `sl local_address rem_address st ... inode` with addresses as hex
/// `ADDR:PORT`, the address in the kernel's byte order.
fn listening_inode(line: &str, addr: std::net::SocketAddr) -> Option<u64> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (local, state, inode) = (f.get(1)?, f.get(3)?, f.get(9)?);
    if *state != "0A" {
        return None;
    }
    let (ip_hex, port_hex) = local.split_once(':')?;
    if u16::from_str_radix(port_hex, 16).ok()? != addr.port() {
        return None;
    }
    let wildcard = ip_hex.bytes().all(|b| b == b'0');
    let same = match addr.ip() {
        std::net::IpAddr::V4(ip) => {
            u32::from_str_radix(ip_hex, 16).ok() == Some(u32::from_ne_bytes(ip.octets()))
        }
        // An IPv6 listener on the address itself is rare on loopback; the
        // port and the wildcard cover the usual cases.
        std::net::IpAddr::V6(_) => false,
    };
    (wildcard || same).then(|| inode.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn stat_with_awkward_command_name() {
        let line = "4242 (echo (x) y) S 17 4242 17 0 -1 4194560 120 0 0 0 \
                    33 44 5 6 20 0 3 0 12345 1000000 200 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            s,
            Stat {
                pid: 4242,
                state: 'S',
                ppid: 17,
                pgrp: 4242,
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
        let st = "Name:\tx\nVmRSS:\t    1234 kB\nPss:   99 kB\n";
        assert_eq!(status_field(st, "VmRSS"), Some(1234));
        assert_eq!(status_field(st, "Pss"), Some(99));
        assert_eq!(status_field(st, "VmSwap"), None);
    }

    #[test]
    fn a_child_is_counted_and_a_zombie_is_seen() {
        let me = std::process::id();
        let before = counts(me).expect("this process");
        let mut child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawning sleep");
        let id = child.id();
        assert_eq!(pids(me)[0], me);
        assert!(pids(me).contains(&id));
        assert!(alive(id));
        assert!(pss_bytes(me).is_some_and(|b| b > 0));
        assert!(cpu_ns(me).is_some_and(|ns| ns > 0));
        // Killed but not yet reaped: a zombie of ours.
        child.kill().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while stat(id).is_some_and(|s| s.state != 'Z') {
            assert!(std::time::Instant::now() < deadline, "no zombie");
            std::thread::yield_now();
        }
        let with_zombie = counts(me).unwrap();
        assert!(!alive(id));
        assert!(with_zombie.zombies > before.zombies, "{with_zombie:?}");
        child.wait().unwrap();
        assert!(!pids(me).contains(&id));
        assert!(members(u32::MAX).is_empty());
        assert_eq!(process_pss_bytes(u32::MAX), None);
        assert!(nofile_soft_limit(me).is_some_and(|n| n > 0));
        // This test's own thread has switched at least once by now (every
        // spawn and wait above blocked it).
        let mine = task_switches(me);
        assert!(!mine.is_empty());
        assert!(mine.iter().any(|&(_, v, n)| v + n > 0), "{mine:?}");
        assert!(task_switches(u32::MAX).is_empty());
    }
}
