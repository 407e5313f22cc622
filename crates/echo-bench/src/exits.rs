//! The kernel's taskstats exit records: for every task that exits on the
//! CPUs we register, the kernel queues one record on our netlink socket,
//! with that task's voluntary and involuntary context switches (`nvcsw`,
//! `nivcsw`) at the moment it died. That is what `/proc` cannot give: a
//! thread that ends with its connection takes its `/proc/<pid>/task/<tid>`
//! entry, and its switches, with it.
//!
//! Syscalls: `socket(AF_NETLINK, SOCK_RAW, NETLINK_GENERIC)`, `bind(2)`,
//! `setsockopt(SO_RCVBUFFORCE)`, `send(2)` of a `CTRL_CMD_GETFAMILY` request
//! (to learn the "TASKSTATS" family's id) and of a `TASKSTATS_CMD_GET` with
//! `TASKSTATS_CMD_ATTR_REGISTER_CPUMASK`, `recv(2)` with `MSG_DONTWAIT`.
//!
//! Why this rather than a sampler thread reading `/proc` every 50 ms on the
//! server's CPU (the alternative considered): the records are exact (the
//! count at exit, not at the last sample before it), and nothing of ours
//! runs while the load runs. The kernel builds the record in the exiting
//! task's own `do_exit`, so its small cost is charged to the server, like
//! any other exit work; we read the socket only at the window's edges, so
//! its receive buffer (forced to 64 MiB) must hold every exit on the
//! registered CPUs in between, the server's and any other process's. If it
//! overflows the kernel says so (`ENOBUFS`) and the counts are reported as
//! lower bounds, never silently short.
//!
//! Limits: registering needs `CAP_NET_ADMIN` in the initial user and pid
//! namespaces; where it is refused the caller falls back to the window's
//! edges. Records name a task's thread group (`ac_tgid`) only from struct
//! version 12 (Linux 5.19 or so); older records cannot be attributed and
//! count as lost. A server pid reused by another process inside the window
//! would have that process's exits counted too; the window is seconds and
//! pids wrap only after `pid_max` forks, so this is not guarded against.

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Netlink and generic-netlink constants (`linux/netlink.h`,
/// `linux/genetlink.h`, `linux/taskstats.h`); the `libc` crate does not
/// carry the taskstats ones.
const NLMSG_HDR: usize = 16;
const GENL_HDR: usize = 4;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const TASKSTATS_CMD_GET: u8 = 1;
const TASKSTATS_CMD_ATTR_REGISTER_CPUMASK: u16 = 3;
const TASKSTATS_CMD_ATTR_DEREGISTER_CPUMASK: u16 = 4;
const TASKSTATS_TYPE_STATS: u16 = 3;
const TASKSTATS_TYPE_AGGR_PID: u16 = 4;
/// Attribute types carry two flag bits (nested, byte order) at the top.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Byte offsets in `struct taskstats`, fixed by its append-only ABI
/// (checked against `offsetof` for version 13).
const TS_VERSION: usize = 0;
const TS_AC_PID: usize = 128;
const TS_AC_PPID: usize = 132;
const TS_NVCSW: usize = 272;
const TS_NIVCSW: usize = 280;
const TS_AC_TGID: usize = 368;
/// `ac_tgid` appeared in version 12.
const TS_TGID_VERSION: u16 = 12;

/// The receive buffer asked for: room for tens of thousands of records.
const RCVBUF: libc::c_int = 64 << 20;

/// One task's exit, as the kernel reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitRecord {
    /// Thread id (`ac_pid`).
    pub tid: u32,
    /// Process (thread group) id (`ac_tgid`).
    pub tgid: u32,
    /// The process's parent (`ac_ppid`, a thread group id).
    pub ppid: u32,
    /// Voluntary context switches over the task's whole life.
    pub voluntary: u64,
    /// Involuntary context switches over the task's whole life.
    pub involuntary: u64,
}

/// What one drain of the socket found.
#[derive(Debug, Default)]
pub struct Drained {
    /// Records, in arrival order.
    pub records: Vec<ExitRecord>,
    /// True if some exits were not recorded: the buffer overflowed, or a
    /// record was too old a version to name its process.
    pub lost: bool,
}

/// A registered taskstats listener; deregisters on drop.
pub struct ExitListener {
    fd: OwnedFd,
    family: u16,
    cpus: String,
}

impl ExitListener {
    /// Registers for the exits on `cpus`, a kernel CPU list such as `0` or
    /// `0-1`; the error says why the kernel refused.
    pub fn open(cpus: &str) -> Result<ExitListener, String> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_GENERIC,
            )
        };
        if raw < 0 {
            return Err(format!("netlink socket: {}", io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `addr` is a valid sockaddr_nl and the length is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(format!("netlink bind: {}", io::Error::last_os_error()));
        }
        // SO_RCVBUFFORCE passes rmem_max (it needs CAP_NET_ADMIN, as does
        // registering); without it the ordinary, capped size is all we get.
        if setsockopt_int(&fd, libc::SO_RCVBUFFORCE, RCVBUF).is_err() {
            let _ = setsockopt_int(&fd, libc::SO_RCVBUF, RCVBUF);
        }
        // Bounds the two handshake replies; drains never block.
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: `tv` is a valid timeval and the length is its size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        let mut l = ExitListener {
            fd,
            family: 0,
            cpus: cpus.to_string(),
        };
        l.family = l.resolve_family()?;
        l.command(TASKSTATS_CMD_ATTR_REGISTER_CPUMASK)
            .map_err(|e| format!("taskstats registration for CPUs {cpus} refused: {e}"))?;
        Ok(l)
    }

    fn resolve_family(&self) -> Result<u16, String> {
        let req = message(
            GENL_ID_CTRL,
            NLM_F_REQUEST,
            CTRL_CMD_GETFAMILY,
            CTRL_ATTR_FAMILY_NAME,
            b"TASKSTATS\0",
        );
        self.send(&req).map_err(|e| format!("netlink send: {e}"))?;
        let mut buf = vec![0u8; 8192];
        let n = self
            .recv(&mut buf, 0)
            .map_err(|e| format!("no reply for the taskstats family: {e}"))?;
        let msg = &buf[..n];
        if u16_at(msg, 4) == Some(NLMSG_ERROR) {
            let errno = -i32_at(msg, NLMSG_HDR).unwrap_or(-libc::EINVAL);
            return Err(format!(
                "no taskstats family: {}",
                io::Error::from_raw_os_error(errno)
            ));
        }
        attrs(msg.get(NLMSG_HDR + GENL_HDR..).unwrap_or(&[]))
            .find(|(t, _)| *t == CTRL_ATTR_FAMILY_ID)
            .and_then(|(_, v)| u16_at(v, 0))
            .ok_or_else(|| "the taskstats family reply has no id".to_string())
    }

    /// Sends a (de)registration and waits for its acknowledgement; exit
    /// records that arrive before it are dropped (they precede any window).
    fn command(&self, attr: u16) -> io::Result<()> {
        let mut cpus = self.cpus.clone().into_bytes();
        cpus.push(0);
        let req = message(
            self.family,
            NLM_F_REQUEST | NLM_F_ACK,
            TASKSTATS_CMD_GET,
            attr,
            &cpus,
        );
        self.send(&req)?;
        let mut buf = vec![0u8; 8192];
        loop {
            let n = self.recv(&mut buf, 0)?;
            if u16_at(&buf[..n], 4) == Some(NLMSG_ERROR) {
                return match -i32_at(&buf[..n], NLMSG_HDR).unwrap_or(-libc::EINVAL) {
                    0 => Ok(()),
                    errno => Err(io::Error::from_raw_os_error(errno)),
                };
            }
        }
    }

    /// Reads every record queued so far, without blocking.
    pub fn drain(&mut self) -> Drained {
        let mut out = Drained::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match self.recv(&mut buf, libc::MSG_DONTWAIT) {
                Ok(n) => self.parse(&buf[..n], &mut out),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => out.lost = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        out
    }

    fn parse(&self, mut buf: &[u8], out: &mut Drained) {
        while let (Some(len), Some(kind)) = (u32_at(buf, 0), u16_at(buf, 4)) {
            let len = len as usize;
            if len < NLMSG_HDR || len > buf.len() {
                break;
            }
            if kind == self.family && len >= NLMSG_HDR + GENL_HDR {
                for (t, nested) in attrs(&buf[NLMSG_HDR + GENL_HDR..len]) {
                    // AGGR_TGID, sent beside the last thread's record, sums
                    // the group's threads: counting it too would count twice.
                    if t != TASKSTATS_TYPE_AGGR_PID {
                        continue;
                    }
                    for (t, stats) in attrs(nested) {
                        if t == TASKSTATS_TYPE_STATS {
                            match record(stats) {
                                Some(r) => out.records.push(r),
                                None => out.lost = true,
                            }
                        }
                    }
                }
            }
            buf = &buf[align4(len).min(buf.len())..];
        }
    }

    fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: `msg` is a live slice of the given length.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    fn recv(&self, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
        // SAFETY: `buf` is a live, writable slice of the given length.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                flags,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

impl Drop for ExitListener {
    fn drop(&mut self) {
        // Closing alone would do in the end (the kernel drops a listener
        // whose socket is gone at its next send), but until then every
        // exit on these CPUs would still build a record for nobody.
        let _ = self.command(TASKSTATS_CMD_ATTR_DEREGISTER_CPUMASK);
    }
}

/// The records of the processes in `known` and of their descendants: a
/// record whose parent is known makes its process known, until nothing
/// changes (a grandchild's record may arrive before its parent's).
pub fn of_tree<'a>(records: &'a [ExitRecord], known: &HashSet<u32>) -> Vec<&'a ExitRecord> {
    let mut known = known.clone();
    loop {
        let before = known.len();
        for r in records {
            if known.contains(&r.ppid) {
                known.insert(r.tgid);
            }
        }
        if known.len() == before {
            break;
        }
    }
    records.iter().filter(|r| known.contains(&r.tgid)).collect()
}

/// The CPU list of every possible CPU, as the kernel prints it.
pub fn possible_cpus() -> String {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "0".into())
}

fn record(stats: &[u8]) -> Option<ExitRecord> {
    let version = u16_at(stats, TS_VERSION)?;
    if version < TS_TGID_VERSION {
        return None;
    }
    Some(ExitRecord {
        tid: u32_at(stats, TS_AC_PID)?,
        tgid: u32_at(stats, TS_AC_TGID)?,
        ppid: u32_at(stats, TS_AC_PPID)?,
        voluntary: u64_at(stats, TS_NVCSW)?,
        involuntary: u64_at(stats, TS_NIVCSW)?,
    })
}

/// One generic-netlink request carrying one attribute.
fn message(kind: u16, flags: u16, cmd: u8, attr: u16, value: &[u8]) -> Vec<u8> {
    let attr_len = 4 + value.len();
    let len = NLMSG_HDR + GENL_HDR + align4(attr_len);
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence number
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    m.extend_from_slice(&[cmd, 1, 0, 0]); // genl command, version 1, reserved
    m.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    m.extend_from_slice(&attr.to_ne_bytes());
    m.extend_from_slice(value);
    m.resize(len, 0);
    m
}

/// The netlink attributes packed in `buf`, as `(type, value)`.
fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u16_at(buf, 0)? as usize;
        let kind = u16_at(buf, 2)? & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return None;
        }
        let value = &buf[4..len];
        buf = &buf[align4(len).min(buf.len())..];
        Some((kind, value))
    })
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn setsockopt_int(fd: &OwnedFd, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and the length is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rec(tid: u32, tgid: u32, ppid: u32) -> ExitRecord {
        ExitRecord {
            tid,
            tgid,
            ppid,
            voluntary: 1,
            involuntary: 0,
        }
    }

    #[test]
    fn the_tree_takes_descendants_in_any_order_and_nothing_else() {
        // 30 is a grandchild of 10 whose record comes before its parent's.
        let records = [
            rec(31, 30, 20),
            rec(11, 10, 1),
            rec(20, 20, 10),
            rec(99, 99, 1),
        ];
        let known = HashSet::from([10]);
        let tids: Vec<u32> = of_tree(&records, &known).iter().map(|r| r.tid).collect();
        assert_eq!(tids, [31, 11, 20]);
    }

    #[test]
    fn a_thread_that_exits_is_reported_with_its_switches() {
        let mut l = match ExitListener::open(&possible_cpus()) {
            Ok(l) => l,
            Err(why) => {
                eprintln!(
                    "taskstats not available here ({why}); the /proc edges are checked instead"
                );
                return;
            }
        };
        let (tid, own) = std::thread::spawn(|| {
            for _ in 0..20 {
                std::thread::sleep(Duration::from_millis(1));
            }
            (
                nix::unistd::gettid().as_raw() as u32,
                own_voluntary_switches(),
            )
        })
        .join()
        .unwrap();
        // No wait needed: the kernel queues the record in do_exit before
        // exit_mm wakes the joiner (CLONE_CHILD_CLEARTID).
        let found = *l
            .drain()
            .records
            .iter()
            .find(|r| r.tid == tid)
            .unwrap_or_else(|| panic!("no exit record for thread {tid}"));
        assert_eq!(found.tgid, std::process::id());
        assert!(found.voluntary >= own, "{} < {own}", found.voluntary);
    }

    /// The calling thread's voluntary switches so far.
    pub(crate) fn own_voluntary_switches() -> u64 {
        let st = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        echo_conformance::tree::status_field(&st, "voluntary_ctxt_switches").unwrap()
    }
}
