//! The scenario matrix of `echo-bench all`: every named workload in one
//! place, which run (quick or full) it belongs to, how long a repetition
//! lasts and may last, and which servers cannot run it and why.
//!
//! Syscalls: `getrlimit(2)` (`RLIMIT_NPROC`, `RLIMIT_NOFILE`), reads of
//! `/proc/sys/kernel/{pid_max,threads-max}` and `/proc/loadavg`, and one
//! `io_uring_setup(2)` probe (its ring closed at once).
//!
//! A server is left out of a scenario its design cannot run rather than
//! run into a failure: the report then shows the cell as skipped, with the
//! reason. The limits are read from this machine (the process limit, the
//! descriptor limit, whether the kernel gives out io_urings), never
//! hard-coded, so the same matrix skips less on a bigger machine. The
//! alternative, running every cell and letting it fail, would spend the
//! stall timeout (tens of seconds) on each impossible cell and teach less
//! than the one-line reason.

use std::time::Duration;

use crate::load::{LoadSpec, Stop};

/// Which sizes of run a scenario belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// The default run and `--full`.
    Quick,
    /// `--full` only.
    Full,
    /// Neither: only when named with `--scenarios` (CI's smoke run).
    Named,
}

/// One named workload.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Short name: `--scenarios`, the JSON parameters, the report.
    pub name: &'static str,
    /// What it shows, for the report's heading.
    pub what: &'static str,
    /// Working connections (with `reconnect`, slots each opening one
    /// connection after another).
    pub conns: usize,
    /// Bytes per message.
    pub size: usize,
    /// Open loop at this many messages per second in total.
    pub rate: Option<f64>,
    /// A new connection per message.
    pub reconnect: bool,
    /// Silent connections besides the working ones.
    pub idle: usize,
    /// Quick, full or named only.
    pub size_of_run: Size,
    /// Sending time of one repetition in the quick run.
    pub quick_secs: f64,
    /// Sending time of one repetition in the full run.
    pub full_secs: f64,
}

/// Connections of the connection sweep (the x axis of the line plots).
pub const SWEEP: &[&str] = &[
    "conns-1",
    "conns-10",
    "conns-100",
    "conns-1000",
    "conns-10000",
];

const fn closed(
    name: &'static str,
    what: &'static str,
    conns: usize,
    size: usize,
    size_of_run: Size,
) -> Scenario {
    Scenario {
        name,
        what,
        conns,
        size,
        rate: None,
        reconnect: false,
        idle: 0,
        size_of_run,
        quick_secs: 0.4,
        full_secs: 1.0,
    }
}

/// The matrix. Quick keeps one scenario per question the claims ask (one
/// client, many, one busy among idle ones, churn, idle) and three points
/// of the connection sweep; full adds the sweep's other points, the
/// message sizes and the open loop.
pub const SCENARIOS: &[Scenario] = &[
    closed(
        "conns-1",
        "1 connection, 64 B messages, closed loop: pure latency, no concurrency",
        1,
        64,
        Size::Quick,
    ),
    closed(
        "conns-10",
        "10 connections, 64 B, closed loop",
        10,
        64,
        Size::Full,
    ),
    closed(
        "conns-100",
        "100 connections, 64 B, closed loop: where the designs start to differ",
        100,
        64,
        Size::Quick,
    ),
    closed(
        "conns-1000",
        "1,000 connections, 64 B, closed loop",
        1000,
        64,
        Size::Quick,
    ),
    closed(
        "conns-10000",
        "10,000 connections, 64 B, closed loop: what each open connection costs",
        10_000,
        64,
        Size::Full,
    ),
    closed(
        "size-4k",
        "10 connections, 4 KiB messages, closed loop",
        10,
        4 << 10,
        Size::Full,
    ),
    closed(
        "size-64k",
        "10 connections, 64 KiB messages, closed loop",
        10,
        64 << 10,
        Size::Full,
    ),
    closed(
        "size-1m",
        "10 connections, 1 MiB messages, closed loop: copying, not waiting",
        10,
        1 << 20,
        Size::Full,
    ),
    Scenario {
        name: "open-10000",
        what: "10,000 connections, 64 B, open loop at 20,000 msg/s in total: latency at a fixed rate",
        conns: 10_000,
        size: 64,
        rate: Some(20_000.0),
        reconnect: false,
        idle: 0,
        size_of_run: Size::Full,
        quick_secs: 0.4,
        full_secs: 1.0,
    },
    Scenario {
        name: "busy-1-idle-1000",
        what: "1 busy connection beside 1,000 idle ones, 64 B, closed loop: what watching costs",
        conns: 1,
        size: 64,
        rate: None,
        reconnect: false,
        idle: 1000,
        size_of_run: Size::Quick,
        quick_secs: 0.4,
        full_secs: 1.0,
    },
    Scenario {
        name: "churn-10",
        what: "10 slots each opening a new connection per 64 B message: msgs/s is connections served per second",
        conns: 10,
        size: 64,
        rate: None,
        reconnect: true,
        idle: 0,
        size_of_run: Size::Quick,
        quick_secs: 0.4,
        full_secs: 1.0,
    },
    Scenario {
        name: "idle-100",
        what: "100 connections, ten messages a second on one of them: server CPU while doing (almost) nothing",
        conns: 1,
        size: 64,
        // Not zero: the window runs from the first send to the last echo,
        // so a few messages spread over the duration are what keeps it
        // open for the whole second.
        rate: Some(10.0),
        reconnect: false,
        idle: 99,
        size_of_run: Size::Quick,
        quick_secs: 1.0,
        full_secs: 2.0,
    },
    Scenario {
        name: "tiny",
        what: "1 connection, 64 B, 0.2 s: a smoke run",
        conns: 1,
        size: 64,
        rate: None,
        reconnect: false,
        idle: 0,
        size_of_run: Size::Named,
        quick_secs: 0.2,
        full_secs: 0.2,
    },
];

/// Repetitions per cell in the quick and the full run.
pub const QUICK_REPEAT: usize = 3;
/// See [`QUICK_REPEAT`].
pub const FULL_REPEAT: usize = 3;

/// What a repetition may take beyond its sending time before it is given
/// up: a fresh server, its connections opened (ten thousand of them, or
/// forks), the echoes in flight, the server stopped.
pub const TIMEOUT_MARGIN: Duration = Duration::from_secs(60);

impl Scenario {
    /// By name.
    pub fn named(name: &str) -> Option<&'static Scenario> {
        SCENARIOS.iter().find(|s| s.name == name)
    }

    /// Whether the run of this size includes it.
    pub fn in_run(&self, full: bool) -> bool {
        match self.size_of_run {
            Size::Quick => true,
            Size::Full => full,
            Size::Named => false,
        }
    }

    /// Sending time of one repetition.
    pub fn duration(&self, full: bool) -> Duration {
        Duration::from_secs_f64(if full {
            self.full_secs
        } else {
            self.quick_secs
        })
    }

    /// After this, a repetition is abandoned and counted failed.
    pub fn timeout(&self, full: bool) -> Duration {
        self.duration(full) + TIMEOUT_MARGIN
    }

    /// Every connection the server holds at once.
    pub fn clients(&self) -> usize {
        self.conns + self.idle
    }

    /// The load, aimed at a server still to be started.
    pub fn spec(&self, full: bool) -> LoadSpec {
        LoadSpec {
            addr: ([127, 0, 0, 1], 0).into(),
            conns: self.conns,
            size: self.size,
            stop: Stop::Duration(self.duration(full)),
            rate: self.rate,
            threads: 1,
            reconnect: self.reconnect,
            idle: self.idle,
        }
    }
}

/// The limits a server design runs into, read once per run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Processes this user may still start: `RLIMIT_NPROC` and `pid_max`,
    /// less what runs now.
    pub processes: usize,
    /// Threads the kernel may still start (`threads-max` less what runs).
    pub threads: usize,
    /// Descriptors a process may hold (`RLIMIT_NOFILE`, hard: both sides
    /// raise their soft limit to it).
    pub files: usize,
    /// Whether `io_uring_setup(2)` succeeds here.
    pub io_uring: Result<(), &'static str>,
}

/// `select(2)`'s descriptor limit: `fd_set` holds descriptors below it.
pub const FD_SETSIZE: usize = libc::FD_SETSIZE;

/// Descriptors a server holds besides its clients: standard streams, the
/// listener, an epoll or a pipe or two.
const SPARE_FDS: usize = 16;

/// The workers of the pools as built: `echo-thread-pool`'s default, and
/// `echo-prefork`'s (one per CPU). A pool serves that many persistent
/// connections at once; in a closed loop the rest wait for a worker that
/// never frees, so each such cell would end only at the stall timeout.
pub fn pool_workers(id: &str) -> Option<usize> {
    match id {
        "thread-pool" => Some(64),
        "prefork" => Some(online_cpus()),
        _ => None,
    }
}

impl Limits {
    /// Reads this machine's limits.
    pub fn read() -> Limits {
        let running = running_tasks();
        let nproc = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NPROC)
            .map_or(u64::MAX, |(soft, _)| soft);
        let pid_max = read_number("/proc/sys/kernel/pid_max").unwrap_or(32_768);
        let threads_max = read_number("/proc/sys/kernel/threads-max").unwrap_or(u64::MAX);
        let files = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(1024, |(_, hard)| hard);
        let cap = |x: u64| usize::try_from(x.saturating_sub(running)).unwrap_or(usize::MAX);
        Limits {
            processes: cap(nproc.min(pid_max)),
            threads: cap(threads_max.min(pid_max)),
            files: usize::try_from(files).unwrap_or(usize::MAX),
            io_uring: probe_io_uring(),
        }
    }

    /// `Ok` if server `id` can run scenario `sc`, else why not. Python
    /// peers have ids `py-…` and the same limits as the design they share.
    pub fn can_run(&self, id: &str, sc: &Scenario) -> Result<(), String> {
        let clients = sc.clients();
        if clients + SPARE_FDS > self.files {
            return Err(format!(
                "{clients} connections need more descriptors than the limit of {}",
                self.files
            ));
        }
        match id {
            "iterative" if clients > 1 && !sc.reconnect => Err(format!(
                "serves one client at a time: with {clients} connections open, all but one wait \
                 for ever in a closed loop"
            )),
            "select" | "py-select" if clients + SPARE_FDS > FD_SETSIZE => Err(format!(
                "select(2) watches descriptors below FD_SETSIZE = {FD_SETSIZE}; \
                 {clients} connections go past it"
            )),
            "fork-per-client" | "py-forking" if clients > self.processes => Err(format!(
                "a process per connection: {clients} processes, and only {} more may start here \
                 (RLIMIT_NPROC, pid_max)",
                self.processes
            )),
            "thread-per-client" | "py-threading" if clients > self.threads => Err(format!(
                "a thread per connection: {clients} threads, and only {} more may start here \
                 (threads-max, pid_max)",
                self.threads
            )),
            "thread-pool" | "prefork" if !sc.reconnect => {
                let workers = pool_workers(id).unwrap_or(1);
                if clients > workers {
                    Err(format!(
                        "a pool of {workers} worker(s) serves {workers} connection(s) at once; \
                         the other {} wait for a worker that a closed loop never frees \
                         (the pool's ceiling, claim 7)",
                        clients - workers
                    ))
                } else {
                    Ok(())
                }
            }
            "io-uring" => self
                .io_uring
                .map_err(|why| format!("the kernel refuses io_uring here: {why}")),
            _ => Ok(()),
        }
    }
}

/// CPUs online, as `echo-prefork` counts them for its default (not the
/// ones this process may use, which pinning narrows to one).
fn online_cpus() -> usize {
    // SAFETY: sysconf(3) takes an integer name and returns a long.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(online).unwrap_or(1).max(1)
}

fn read_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Tasks running now, from `/proc/loadavg`'s fourth field (`running/total`).
fn running_tasks() -> u64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().nth(3)?.split_once('/')?.1.parse().ok())
        .unwrap_or(0)
}

/// One `io_uring_setup(2)` with a ring of one entry, closed at once. A
/// kernel built without it says `ENOSYS`; a sandbox (seccomp, or
/// `kernel.io_uring_disabled`) says `EPERM`.
fn probe_io_uring() -> Result<(), &'static str> {
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup reads and writes a `struct io_uring_params`,
    // 120 bytes on every kernel that has the call; `params` is that large,
    // zeroed (no flags asked for) and lives across the call.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd < 0 {
        return Err(match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::ENOSYS) => "io_uring_setup(2) is not in this kernel (ENOSYS)",
            Some(libc::EPERM) => "io_uring_setup(2) is not permitted here (EPERM)",
            _ => "io_uring_setup(2) failed",
        });
    }
    // SAFETY: `fd` was just returned to us by io_uring_setup and is closed
    // once, here; nothing else holds it.
    unsafe { libc::close(fd as i32) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roomy() -> Limits {
        Limits {
            processes: 50_000,
            threads: 50_000,
            files: 1 << 20,
            io_uring: Ok(()),
        }
    }

    #[test]
    fn names_are_unique_and_quick_is_in_full() {
        for (i, a) in SCENARIOS.iter().enumerate() {
            assert!(
                SCENARIOS[i + 1..].iter().all(|b| b.name != a.name),
                "{}",
                a.name
            );
            if a.in_run(false) {
                assert!(a.in_run(true), "{} is quick but not full", a.name);
            }
        }
        for s in SWEEP {
            assert!(Scenario::named(s).is_some(), "{s}");
        }
    }

    #[test]
    fn designs_are_left_out_where_they_cannot_run() {
        let l = roomy();
        let sc = |n| Scenario::named(n).unwrap();
        assert!(l.can_run("iterative", sc("conns-1")).is_ok());
        assert!(l.can_run("iterative", sc("churn-10")).is_ok());
        assert!(l.can_run("iterative", sc("conns-100")).is_err());
        assert!(l.can_run("select", sc("conns-1000")).is_ok());
        let e = l.can_run("select", sc("conns-10000")).unwrap_err();
        assert!(e.contains("FD_SETSIZE"), "{e}");
        assert!(l.can_run("epoll", sc("conns-10000")).is_ok());
        let few = Limits {
            processes: 500,
            ..roomy()
        };
        assert!(few.can_run("fork-per-client", sc("conns-100")).is_ok());
        let e = few
            .can_run("fork-per-client", sc("conns-1000"))
            .unwrap_err();
        assert!(e.contains("500"), "{e}");
        let e = l.can_run("thread-pool", sc("conns-100")).unwrap_err();
        assert!(e.contains("64 worker"), "{e}");
        let no_ring = Limits {
            io_uring: Err("EPERM"),
            ..roomy()
        };
        assert!(no_ring.can_run("io-uring", sc("conns-1")).is_err());
        assert!(no_ring.can_run("epoll", sc("conns-1")).is_ok());
    }
}
