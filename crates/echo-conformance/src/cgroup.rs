//! A control group per measured server (Linux only): exact CPU, memory and
//! task figures for a whole process tree, and a way to stop all of it.
//!
//! Syscalls: `mkdir(2)`/`rmdir(2)` on the cgroup filesystem, `open(2)` +
//! `write(2)` of `0` to `cgroup.procs` in the child between `fork` and
//! `exec` (the server joins before it runs a single instruction of its
//! own), `read(2)` of the counter files, `kill(2)` of every task left.
//!
//! Why a cgroup rather than walking `/proc` ([`crate::tree`]): the kernel
//! charges every task of the group, including children that exit between
//! two readings, children reaped automatically (`SIGCHLD` ignored, whose
//! times never reach the parent's `cutime`), and double-forked ones that
//! were reparented out of the tree. Memory is charged per page, once, to
//! the group that first touched it, so pages shared copy-on-write by N
//! forked children count once, not N times as summing `VmRSS` would.
//!
//! Which hierarchy is found at run time from `/proc/self/mountinfo`:
//! - cgroup v2 whose `cgroup.controllers` lists `memory` and `pids`:
//!   `cpu.stat` (`usage_usec`, `user_usec`, `system_usec`), `memory.peak`
//!   (reset by writing to it, kernels 6.12 and later; on older kernels the
//!   peak since the group was created), `pids.peak`;
//! - else cgroup v1 with `cpuacct`, `memory` and `pids` mounted:
//!   `cpuacct.usage{,_user,_sys}` (ns), `memory.max_usage_in_bytes` (reset
//!   by writing 0), `pids.peak`;
//! - else nothing: the caller falls back to [`crate::tree`] and says so.
//!
//! Groups are made under the root of each hierarchy, or under our own
//! group when the root is not writable, with a name unique to this process
//! and call, and are removed (`rmdir`, once no task is left) on drop.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Which cgroup interface a [`Cgroup`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The unified hierarchy with the memory and pids controllers.
    V2,
    /// Separate `cpuacct`, `memory` and `pids` hierarchies.
    V1,
}

impl Version {
    /// `"cgroup-v2"` or `"cgroup-v1"`, for reports.
    pub fn name(self) -> &'static str {
        match self {
            Version::V2 => "cgroup-v2",
            Version::V1 => "cgroup-v1",
        }
    }
}

/// Counters of a group at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuCounters {
    /// CPU time of every task ever in the group, nanoseconds.
    pub total_ns: u64,
    /// Of which user time, nanoseconds.
    pub user_ns: u64,
    /// Of which system time, nanoseconds.
    pub system_ns: u64,
}

/// One control group (one directory per v1 hierarchy, one in v2).
#[derive(Debug)]
pub struct Cgroup {
    version: Version,
    /// v2: the one directory. v1: cpuacct, memory, pids, in that order.
    dirs: Vec<PathBuf>,
    /// The `cgroup.procs` files, as C strings made before any fork, so the
    /// child can join without allocating.
    procs_files: Vec<CString>,
    /// v2: `memory.peak` held open, since a reset applies to the writing
    /// file descriptor only.
    peak_file: Option<fs::File>,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl Cgroup {
    /// Creates a fresh group named `<prefix>-<pid>-<n>` in the first usable
    /// hierarchy; `Err` says why none could be used (not mounted, the
    /// controllers missing, not writable).
    pub fn create(prefix: &str) -> Result<Cgroup, String> {
        let mounts = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut why = Vec::new();
        match v2_parent(&mounts, &own) {
            Ok(parent) => match make(&[parent], &name) {
                Ok(dirs) => return Cgroup::new(Version::V2, dirs),
                Err(e) => why.push(format!("cgroup v2: {e}")),
            },
            Err(e) => why.push(format!("cgroup v2: {e}")),
        }
        let mut parents = Vec::new();
        for controller in ["cpuacct", "memory", "pids"] {
            match v1_parents(&mounts, &own, controller) {
                Some(p) => parents.push(p),
                None => why.push(format!("cgroup v1: no {controller} hierarchy mounted")),
            }
        }
        if parents.len() == 3 {
            match make_each(&parents, &name) {
                Ok(dirs) => return Cgroup::new(Version::V1, dirs),
                Err(e) => why.push(format!("cgroup v1: {e}")),
            }
        }
        Err(why.join("; "))
    }

    fn new(version: Version, dirs: Vec<PathBuf>) -> Result<Cgroup, String> {
        let procs_files = dirs
            .iter()
            .map(|d| CString::new(d.join("cgroup.procs").as_os_str().as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("cgroup path with a NUL byte: {e}"))?;
        Ok(Cgroup {
            version,
            dirs,
            procs_files,
            peak_file: None,
        })
    }

    /// The interface in use.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The group's directories (one per v1 hierarchy).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Makes `cmd`'s child join the group between `fork` and `exec`, so
    /// that the server and everything it forks are charged from its first
    /// instruction. (Moving the child's pid in from here after `spawn`, the
    /// alternative, races with the child: it could fork before it moves.)
    pub fn join_before_exec(&self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        // Cloned now, in the parent: the child must not allocate.
        let files = self.procs_files.clone();
        // The closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed.
        // SAFETY: it makes raw open, write and close system calls on
        // NUL-terminated paths built before the fork, allocates nothing and
        // takes no lock.
        unsafe {
            cmd.pre_exec(move || {
                for path in &files {
                    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    // Writing 0 moves the writing process itself.
                    let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                    let err = io::Error::last_os_error();
                    libc::close(fd);
                    if n != 1 {
                        return Err(err);
                    }
                }
                Ok(())
            });
        }
    }

    fn dir(&self, v1_index: usize) -> &Path {
        match self.version {
            Version::V2 => &self.dirs[0],
            Version::V1 => &self.dirs[v1_index],
        }
    }

    /// CPU time of the group so far; `None` if the counters cannot be read.
    pub fn cpu(&self) -> Option<CpuCounters> {
        match self.version {
            Version::V2 => {
                let text = fs::read_to_string(self.dirs[0].join("cpu.stat")).ok()?;
                let field = |k: &str| -> Option<u64> {
                    text.lines().find_map(|l| {
                        let (key, v) = l.split_once(' ')?;
                        (key == k).then(|| v.trim().parse().ok())?
                    })
                };
                Some(CpuCounters {
                    total_ns: field("usage_usec")? * 1000,
                    user_ns: field("user_usec")? * 1000,
                    system_ns: field("system_usec")? * 1000,
                })
            }
            Version::V1 => {
                let dir = self.dir(0);
                Some(CpuCounters {
                    total_ns: read_u64(&dir.join("cpuacct.usage"))?,
                    user_ns: read_u64(&dir.join("cpuacct.usage_user"))?,
                    system_ns: read_u64(&dir.join("cpuacct.usage_sys"))?,
                })
            }
        }
    }

    /// Restarts the memory peak from the current usage. `Err` if the kernel
    /// cannot (v2 before 6.12): the peak then covers the group's whole life.
    pub fn reset_memory_peak(&mut self) -> Result<(), String> {
        match self.version {
            Version::V2 => {
                use std::io::Write;
                let path = self.dirs[0].join("memory.peak");
                let mut f = fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
                let written = f.write_all(b"reset\n");
                self.peak_file = Some(f);
                written.map_err(|e| format!("cannot reset {}: {e}", path.display()))
            }
            Version::V1 => {
                let path = self.dir(1).join("memory.max_usage_in_bytes");
                fs::write(&path, "0").map_err(|e| format!("cannot reset {}: {e}", path.display()))
            }
        }
    }

    /// Most memory charged to the group at once since the last reset (or
    /// since creation), in bytes: anonymous pages, page cache the group
    /// brought in, and kernel memory such as page tables and stacks.
    pub fn memory_peak(&self) -> Option<u64> {
        match self.version {
            Version::V2 => {
                if let Some(f) = &self.peak_file {
                    use std::io::{Read, Seek};
                    let mut f = f;
                    let mut s = String::new();
                    f.seek(io::SeekFrom::Start(0)).ok()?;
                    f.read_to_string(&mut s).ok()?;
                    return s.trim().parse().ok();
                }
                read_u64(&self.dirs[0].join("memory.peak"))
            }
            Version::V1 => read_u64(&self.dir(1).join("memory.max_usage_in_bytes")),
        }
    }

    /// Most tasks (threads, over all processes) in the group at once since
    /// it was created; not resettable.
    pub fn tasks_peak(&self) -> Option<u64> {
        read_u64(&self.dir(2).join("pids.peak"))
    }

    /// The processes in the group now.
    pub fn procs(&self) -> Vec<u32> {
        read_ids(&self.dir(2).join("cgroup.procs"))
    }

    /// Sends SIGKILL to every process in the group until none is left, up
    /// to `limit`; true once it is empty. A process forking while we kill
    /// is why this loops.
    pub fn kill_all(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            // Every hierarchy, in case a process joined one and not another.
            let mut left: Vec<u32> = self
                .dirs
                .iter()
                .flat_map(|d| read_ids(&d.join("cgroup.procs")))
                .collect();
            left.sort_unstable();
            left.dedup();
            if left.is_empty() {
                return true;
            }
            for pid in left {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            if Instant::now() >= deadline {
                return false;
            }
            // A killed task leaves the group once it has exited, a few
            // scheduler ticks later; there is no event to wait on in v1.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Cgroup {
    /// Kills what is left and removes the directories, so that no group
    /// and no task outlives the measurement.
    fn drop(&mut self) {
        self.kill_all(Duration::from_secs(5));
        for dir in &self.dirs {
            // An exited task may linger in the group for a moment (a zombie
            // not yet reaped by its new parent): retry rmdir briefly.
            let deadline = Instant::now() + Duration::from_secs(2);
            while fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_ids(path: &Path) -> Vec<u32> {
    fs::read_to_string(path)
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// One line of `/proc/self/mountinfo` that mounts a cgroup filesystem.
struct Mount {
    /// Where in the hierarchy the mount starts (field 4).
    root: String,
    /// Where it is mounted (field 5).
    point: PathBuf,
    /// `cgroup` or `cgroup2`.
    fstype: String,
    /// Super options (v1: the controllers, comma-separated).
    options: String,
}

fn cgroup_mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            let fstype = *post.first()?;
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            Some(Mount {
                root: pre.get(3)?.to_string(),
                point: PathBuf::from(unescape(pre.get(4)?)),
                fstype: fstype.to_string(),
                options: post.get(2).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Our own group in a hierarchy, from `/proc/self/cgroup` (`id:ctrls:path`;
/// v2 is `0::path`), as a directory under the mount.
fn own_dir(mount: &Mount, own: &str, matches: impl Fn(&str) -> bool) -> Option<PathBuf> {
    let path = own.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        matches(ctrls).then_some(path)
    })?;
    let rel = path.strip_prefix(mount.root.as_str()).unwrap_or(path);
    Some(mount.point.join(rel.trim_start_matches('/')))
}

/// Candidate parent directories for a v2 group: the root, then our own.
fn v2_parent(mountinfo: &str, own: &str) -> Result<Vec<PathBuf>, String> {
    let mounts = cgroup_mounts(mountinfo);
    let m = mounts
        .iter()
        .find(|m| m.fstype == "cgroup2")
        .ok_or("not mounted")?;
    let controllers = fs::read_to_string(m.point.join("cgroup.controllers")).unwrap_or_default();
    let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
    if !(has("memory") && has("pids")) {
        return Err(format!(
            "{} has no memory and pids controllers (cgroup.controllers: {:?})",
            m.point.display(),
            controllers.trim()
        ));
    }
    let mut out = vec![m.point.clone()];
    out.extend(own_dir(m, own, |c| c.is_empty()));
    Ok(out)
}

/// Candidate parents for one v1 controller: the root, then our own group.
fn v1_parents(mountinfo: &str, own: &str, controller: &str) -> Option<Vec<PathBuf>> {
    let mounts = cgroup_mounts(mountinfo);
    let has = |opts: &str| opts.split(',').any(|o| o == controller);
    let m = mounts
        .iter()
        .find(|m| m.fstype == "cgroup" && has(&m.options))?;
    let mut out = vec![m.point.clone()];
    out.extend(own_dir(m, own, has));
    Some(out)
}

/// Makes `name` under the first candidate of each hierarchy that takes it.
fn make_each(candidates: &[Vec<PathBuf>], name: &str) -> Result<Vec<PathBuf>, String> {
    let mut made: Vec<PathBuf> = Vec::new();
    for parents in candidates {
        match make(std::slice::from_ref(parents), name) {
            Ok(mut dirs) => made.append(&mut dirs),
            Err(e) => {
                for d in &made {
                    let _ = fs::remove_dir(d);
                }
                return Err(e);
            }
        }
    }
    Ok(made)
}

/// Makes `name` under the first parent of `candidates[0]` that accepts it;
/// for v2, also enables the memory and pids controllers for the child.
fn make(candidates: &[Vec<PathBuf>], name: &str) -> Result<Vec<PathBuf>, String> {
    let mut errors = Vec::new();
    for parent in &candidates[0] {
        if parent.join("cgroup.subtree_control").exists() {
            // v2: a child gets a controller only if its parent hands it down.
            let _ = fs::write(parent.join("cgroup.subtree_control"), "+memory +pids");
            let enabled =
                fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
            if !(enabled.contains("memory") && enabled.contains("pids")) {
                errors.push(format!(
                    "{}: cannot enable the memory and pids controllers",
                    parent.display()
                ));
                continue;
            }
        }
        let dir = parent.join(name);
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(vec![dir]),
            Err(e) => errors.push(format!("cannot create {}: {e}", dir.display())),
        }
    }
    Err(errors.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn mountinfo_and_own_groups_are_parsed() {
        let own = "4:memory:/process_api/abc\n2:cpuacct:/\n0::/\n";
        assert_eq!(
            v1_parents(MOUNTINFO, own, "memory").unwrap(),
            vec![
                PathBuf::from("/sys/fs/cgroup/memory"),
                PathBuf::from("/sys/fs/cgroup/memory/process_api/abc")
            ]
        );
        assert_eq!(
            v1_parents(MOUNTINFO, own, "cpuacct").unwrap()[0],
            PathBuf::from("/sys/fs/cgroup/cpuacct")
        );
        assert!(v1_parents(MOUNTINFO, own, "blkio").is_none());
        let m = cgroup_mounts(MOUNTINFO);
        assert_eq!(m.len(), 4);
        assert_eq!(m[3].fstype, "cgroup2");
        assert_eq!(unescape("/a\\040b"), "/a b");
    }

    /// Exercises a real group when this machine lets us make one; says so
    /// when it does not, and then checks that the reason is given.
    #[test]
    fn a_child_joins_before_exec_and_nothing_survives_drop() {
        let cg = match Cgroup::create("echo-conformance-test") {
            Ok(cg) => cg,
            Err(why) => {
                eprintln!("no cgroup on this machine, only the error is checked: {why}");
                assert!(!why.is_empty());
                return;
            }
        };
        let mut cmd = Command::new("sh");
        // A child that forks a grandchild which burns CPU, then both sleep.
        cmd.args([
            "-c",
            "(i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 30) & exec sleep 30",
        ])
        .stdin(Stdio::null());
        cg.join_before_exec(&mut cmd);
        let mut child = cmd.spawn().expect("spawning sh");
        let deadline = Instant::now() + Duration::from_secs(20);
        while cg.procs().len() < 2 {
            assert!(Instant::now() < deadline, "procs: {:?}", cg.procs());
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(cg.procs().contains(&child.id()));
        let before = cg.cpu().expect("cpu counters");
        // The grandchild's loop shows up as CPU time charged to the group.
        while cg.cpu().unwrap().total_ns <= before.total_ns {
            assert!(Instant::now() < deadline, "no CPU charged");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(cg.memory_peak().is_some_and(|b| b > 0));
        assert!(cg.tasks_peak().is_some_and(|n| n >= 2));
        let dirs = cg.dirs().to_vec();
        drop(cg);
        let _ = child.wait();
        for d in dirs {
            assert!(!d.exists(), "{} left behind", d.display());
        }
    }
}
