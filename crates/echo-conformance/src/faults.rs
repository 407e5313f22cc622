//! The fault suite: what a server must survive, beyond answering correctly.
//!
//! Four faults ([`crate::FAULTS`]): SIGTERM while a client is mid-transfer,
//! a storm of clients past the server's open-files limit, `--max-conns`
//! enforced, and a soak of 1 GiB of pseudo-random bytes over concurrent
//! connections.
//!
//! # Syscalls
//!
//! Against a binary, each fault spawns a fresh server; the storm's server
//! gets a low `RLIMIT_NOFILE` through `setrlimit(2)` in `pre_exec`, between
//! `fork` and `exec`. `kill(2)` sends SIGTERM. The clients are blocking
//! `std` sockets (`connect`, `read`, `write`, `shutdown`) with
//! `SO_RCVTIMEO`/`SO_SNDTIMEO` on every wait. The server is watched from
//! `/proc` ([`crate::tree`]): its CPU through `clock_gettime(2)` on its
//! CPU-time clock, its memory as PSS, its open-files limit from
//! `/proc/<pid>/limits`.
//!
//! # Trade-offs
//!
//! A fresh server per fault costs a spawn (milliseconds) but keeps faults
//! independent: a storm's leftovers cannot fail the soak, and a server
//! killed by one fault does not fail the next. The alternative, one server
//! for the whole suite as the cases use, is all an external server allows:
//! there a fault that needs what the target lacks (a pid to signal or to
//! watch, the `--max-conns` it was started with) is reported as not run,
//! with the reason, never as a pass, and SIGTERM runs last because it ends
//! the server.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::cases::{CaseResult, connect, is_timeout, pseudo_random};
use crate::limits::{Probe, RETRY_PAUSE, max_conns_enforced, probe, remaining};
use crate::{CASES, FAULTS, Failure, Outcome, Report, ServerProcess, Verdict, judge, tree};

/// The open-files limit (soft and hard) a spawned server gets for the
/// descriptor storm: enough for its own few descriptors (stdio, listener,
/// epoll, eventfd) and some clients, small enough that a storm of
/// [`STORM_FACTOR`] times as many clients takes seconds, not minutes.
pub const STORM_NOFILE: u64 = 64;

/// The storm opens this many clients per descriptor the server may hold.
pub const STORM_FACTOR: u64 = 4;

/// Most of one core (as a fraction) the server may use while the storm's
/// clients sit idle. A correct server is idle too: it sleeps in `accept`,
/// `epoll_wait` or a back-off and uses well under 1 % of a core. One that
/// retries a failing `accept` at once (the listener stays readable while
/// the backlog is full) uses all the core it gets, at least half of one
/// even on a machine busy with other work. A quarter sits far from both.
pub const STORM_CPU_LIMIT: f64 = 0.25;

/// How long the storm's CPU is measured. This is a measuring window, not a
/// wait for something to happen: long enough that a spinning loop's share
/// stands far above the start-up work of a few accepts, short enough to
/// keep the fault quick.
const STORM_WINDOW: Duration = Duration::from_millis(1500);

/// The storm's connects together may take this long; slower connects are a
/// full listen backlog's SYN retries, and the storm goes on with what it has.
const STORM_CONNECT_BUDGET: Duration = Duration::from_secs(20);

/// After the storm, a fresh client must be served within this.
const RECOVERY_LIMIT: Duration = Duration::from_secs(10);

/// `--max-conns` given to a spawned server for the `max-conns` fault.
pub const MAX_CONNS: usize = 3;

/// Bytes the soak sends (and must get back) over all its connections.
pub const SOAK_BYTES: u64 = 1 << 30;

/// Concurrent connections of the soak, each with a writer and a verifying
/// reader.
pub const SOAK_CONNS: u64 = 4;

/// How much the server tree's memory (PSS) may grow during the soak. A
/// server with bounded per-connection buffers grows by a few MiB at most
/// (epoll keeps up to 1 MiB of output per connection, the blocking models
/// 16 KiB); one that keeps what it has sent grows by the whole gigabyte.
/// 64 MiB is far from both, and is crossed after 6 % of the soak.
pub const SOAK_PSS_LIMIT: u64 = 64 << 20;

/// The soak fails if no connection makes progress for this long. Progress
/// is counted over all connections together, so a server that serves them
/// one after another (iterative) is not stalled.
const SOAK_STALL: Duration = Duration::from_secs(10);

/// The soak's overall bound, far above its few seconds on loopback.
const SOAK_DEADLINE: Duration = Duration::from_secs(600);

/// Each connection's payload repeats a pattern of this length: 4 MiB plus
/// a prime, so that the repetition never lines up with the 256 KiB reads
/// and writes or with a power-of-two buffer in the server, and a lost or
/// repeated block shows as a mismatch, not only in the byte count.
const PATTERN_LEN: usize = (4 << 20) + 4093;

/// Bytes sent before SIGTERM, all echoed before the signal is sent.
const BEFORE_SIGTERM: usize = 1 << 20;

/// Bytes sent after SIGTERM, which the server must still echo.
const AFTER_SIGTERM: usize = 8 << 20;

/// How long after SIGTERM new connections are probed before the transfer
/// goes on. A server that closes its listener shows it within milliseconds
/// (the signal's delivery and the model noticing it); one busy with the
/// open client (iterative) leaves the probe in the backlog, and that probe
/// must then be closed unanswered when the server exits.
const PROBE_PHASE: Duration = Duration::from_secs(2);

/// Slack on top of [`echo_protocol::GRACE_PERIOD`] for a server to exit
/// after SIGTERM: process teardown on a busy machine.
const EXIT_MARGIN: Duration = Duration::from_secs(2);

/// The longest any single read or write of a fault may stall.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// What the fault suite runs against.
#[derive(Debug, Clone)]
pub enum FaultTarget {
    /// A server binary, spawned afresh for each fault with `args` plus
    /// what the fault needs (`--max-conns`, a low open-files limit).
    Binary {
        /// The server binary.
        bin: PathBuf,
        /// The model's own flags.
        args: Vec<String>,
    },
    /// A server someone else started.
    External {
        /// Where it listens.
        addr: SocketAddr,
        /// Its process id: needed to signal it and to watch its CPU and
        /// memory.
        pid: Option<u32>,
        /// The `--max-conns` it was started with, if any.
        max_conns: Option<usize>,
    },
}

/// A fault either ran, with a result, or could not run here, with why.
enum Ran {
    Done(CaseResult),
    NotRun(String),
}

/// Runs the faults (all of [`FAULTS`], or those named in `only`, in
/// `FAULTS` order), calling `on_outcome` as each finishes. Expected limits
/// work as in [`crate::run_suite`]: they excuse a shortfall, never
/// breakage. `Err` only for setup problems: an unknown name, or an
/// external target not reachable.
pub fn run_faults(
    target: &FaultTarget,
    expected_limits: &[String],
    only: Option<&[String]>,
    on_outcome: &mut dyn FnMut(&Outcome),
) -> Result<Report, String> {
    for name in expected_limits {
        if !FAULTS.contains(&name.as_str()) && !CASES.contains(&name.as_str()) {
            return Err(format!(
                "unknown name '{name}' in the expected limits; the faults are: {}; the cases: {}",
                FAULTS.join(", "),
                CASES.join(", ")
            ));
        }
    }
    let selected: Vec<&'static str> = match only {
        None => FAULTS.to_vec(),
        Some(names) => {
            for name in names {
                if !FAULTS.contains(&name.as_str()) {
                    return Err(format!(
                        "unknown fault '{name}' in the faults to run; the faults are: {}",
                        FAULTS.join(", ")
                    ));
                }
            }
            FAULTS
                .iter()
                .copied()
                .filter(|f| names.iter().any(|n| n == f))
                .collect()
        }
    };
    // The storm holds hundreds of sockets at once.
    crate::raise_nofile_limit()?;
    if let FaultTarget::External { addr, .. } = target {
        TcpStream::connect_timeout(addr, Duration::from_secs(3))
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    }

    let mut report = Report::default();
    for fault in selected {
        let start = Instant::now();
        let ran =
            catch_unwind(AssertUnwindSafe(|| run_one(fault, target))).unwrap_or_else(|panic| {
                Ran::Done(Err(Failure::Broken(format!(
                    "the fault panicked: {}",
                    crate::panic_text(&panic)
                ))))
            });
        let outcome = match ran {
            Ran::Done(result) => {
                let expected = expected_limits.iter().any(|n| n == fault);
                judge(fault, result, expected, start.elapsed())
            }
            Ran::NotRun(why) => Outcome {
                case: fault,
                verdict: Verdict::NotRun,
                detail: why,
                elapsed: start.elapsed(),
            },
        };
        on_outcome(&outcome);
        report.outcomes.push(outcome);
    }
    Ok(report)
}

fn run_one(fault: &str, target: &FaultTarget) -> Ran {
    match target {
        FaultTarget::Binary { bin, args } => {
            let mut cmd = Command::new(bin);
            cmd.args(args).args(["--addr", "127.0.0.1:0"]);
            match fault {
                "descriptor-storm" => {
                    let limit = STORM_NOFILE;
                    crate::process::limit_nofile(&mut cmd, limit);
                    with_server(cmd, |s| storm(s.addr(), s.pid(), limit))
                }
                "max-conns" => {
                    cmd.args(["--max-conns", &MAX_CONNS.to_string()]);
                    with_server(cmd, |s| max_conns_enforced(s.addr(), MAX_CONNS))
                }
                "soak" => with_server(cmd, |s| soak(s.addr(), Some(s.pid()))),
                "sigterm-mid-transfer" => match ServerProcess::spawn_command(cmd) {
                    Err(e) => Ran::Done(Err(Failure::Broken(e))),
                    Ok(mut server) => {
                        let (addr, pid) = (server.addr(), server.pid());
                        Ran::Done(sigterm_mid_transfer(addr, pid, &mut |limit| match server
                            .wait_timeout(limit)
                        {
                            Some(status) => Exit::Status(status),
                            None => Exit::Running,
                        }))
                    }
                },
                other => Ran::Done(Err(Failure::Broken(format!("no such fault: {other}")))),
            }
        }
        FaultTarget::External {
            addr,
            pid,
            max_conns,
        } => {
            let addr = *addr;
            match (fault, *pid, *max_conns) {
                ("descriptor-storm", None, _) => Ran::NotRun(
                    "needs the server's pid (--pid) to read its open-files limit and its CPU"
                        .into(),
                ),
                ("descriptor-storm", Some(pid), _) => external_storm(addr, pid),
                ("max-conns", _, None) => Ran::NotRun(
                    "needs the --max-conns N the server was started with (--max-conns)".into(),
                ),
                ("max-conns", _, Some(n)) if n > 1000 => Ran::NotRun(format!(
                    "--max-conns {n} is more clients than this check opens (1000 at most)"
                )),
                ("max-conns", _, Some(n)) => Ran::Done(max_conns_enforced(addr, n)),
                ("soak", pid, _) => Ran::Done(soak(addr, pid)),
                ("sigterm-mid-transfer", None, _) => {
                    Ran::NotRun("needs the server's pid (--pid) to send it SIGTERM".into())
                }
                ("sigterm-mid-transfer", Some(pid), _) => {
                    Ran::Done(sigterm_mid_transfer(addr, pid, &mut |limit| {
                        // Not our child: its exit status is its parent's to
                        // see; we can only see it gone.
                        let deadline = Instant::now() + limit;
                        loop {
                            if !tree::alive(pid) {
                                return Exit::Gone;
                            }
                            if Instant::now() >= deadline {
                                return Exit::Running;
                            }
                            thread::sleep(Duration::from_millis(10));
                        }
                    }))
                }
                (other, _, _) => Ran::Done(Err(Failure::Broken(format!("no such fault: {other}")))),
            }
        }
    }
}

/// Spawns the server, runs `fault` against it, then stops it: a server
/// that passed must also exit 0 on SIGTERM; one that failed and is gone
/// has its exit status added to the failure.
fn with_server(cmd: Command, fault: impl FnOnce(&ServerProcess) -> CaseResult) -> Ran {
    let mut server = match ServerProcess::spawn_command(cmd) {
        Ok(s) => s,
        Err(e) => return Ran::Done(Err(Failure::Broken(e))),
    };
    let result = fault(&server);
    let exited = server.wait_timeout(Duration::ZERO);
    Ran::Done(match (result, exited) {
        (Err(Failure::Broken(d)), Some(status)) => Err(Failure::Broken(format!(
            "{d} (the server exited with {status})"
        ))),
        (Err(Failure::Short(d)), Some(status)) => Err(Failure::Broken(format!(
            "{d} (the server exited with {status})"
        ))),
        (Err(e), None) => Err(e),
        (Ok(_), Some(status)) => Err(Failure::Broken(format!(
            "the server exited on its own, with {status}, during the fault"
        ))),
        (Ok(detail), None) => match server.terminate() {
            Ok(status) if status.success() => Ok(detail),
            Ok(status) => Err(Failure::Broken(format!(
                "{detail}; but then the server exited with {status} after SIGTERM (expected 0)"
            ))),
            Err(e) => Err(Failure::Broken(format!(
                "{detail}; but then the server {e}"
            ))),
        },
    })
}

// ---- descriptor-storm ------------------------------------------------------

fn external_storm(addr: SocketAddr, pid: u32) -> Ran {
    use nix::sys::resource::{Resource, getrlimit};
    let Some(limit) = tree::nofile_soft_limit(pid) else {
        return Ran::NotRun(format!(
            "cannot read the open-files limit of pid {pid} from /proc/{pid}/limits \
             (not ours, or unlimited)"
        ));
    };
    let ours = getrlimit(Resource::RLIMIT_NOFILE).map_or(0, |(soft, _)| soft);
    // Our own few descriptors (stdio, this binary's files) need room too.
    let needed = limit.saturating_mul(STORM_FACTOR).saturating_add(64);
    if needed > ours {
        return Ran::NotRun(format!(
            "the server may open {limit} files; a storm of {STORM_FACTOR}x that needs {needed} \
             descriptors here, and this process may open {ours} (start the server under a \
             lower `ulimit -n`)"
        ));
    }
    Ran::Done(storm(addr, pid, limit))
}

/// Opens [`STORM_FACTOR`] x `limit` clients, holds them idle while
/// measuring the server's CPU, closes them, and asks for a fresh echo.
fn storm(addr: SocketAddr, pid: u32, limit: u64) -> CaseResult {
    let wanted = (limit * STORM_FACTOR) as usize;
    let budget_end = Instant::now() + STORM_CONNECT_BUDGET;
    let mut clients = Vec::with_capacity(wanted);
    let mut failed = 0usize;
    while clients.len() + failed < wanted && Instant::now() < budget_end {
        match TcpStream::connect_timeout(&addr, remaining(budget_end, Duration::from_secs(3))) {
            Ok(s) => clients.push(s),
            Err(_) => failed += 1,
        }
    }
    let opened = clients.len();
    if !tree::alive(pid) {
        return Err(Failure::Broken(format!(
            "the server died during a storm of {opened} clients on {limit} descriptors"
        )));
    }

    let cpu = |what: &str| {
        tree::cpu_ns(pid)
            .ok_or_else(|| Failure::Broken(format!("server pid {pid} vanished {what}")))
    };
    let before = cpu("as the storm began")?;
    let window = Instant::now();
    thread::sleep(STORM_WINDOW);
    let after = cpu("while the storm's clients idled")?;
    let share = (after.saturating_sub(before)) as f64 / window.elapsed().as_nanos() as f64;
    if !tree::alive(pid) {
        return Err(Failure::Broken(format!(
            "the server died while {opened} clients idled past its {limit} descriptors"
        )));
    }
    if share > STORM_CPU_LIMIT {
        return Err(Failure::Broken(format!(
            "the server used {:.0}% of a core while {opened} clients idled past its {limit} \
             descriptors (limit {:.0}%): a busy loop, such as retrying a failing accept at once",
            share * 100.0,
            STORM_CPU_LIMIT * 100.0
        )));
    }

    drop(clients);
    let ended = Instant::now();
    let deadline = ended + RECOVERY_LIMIT;
    loop {
        let attempt = probe(addr, remaining(deadline, Duration::from_secs(1)));
        if attempt == Probe::Served {
            break;
        }
        if !tree::alive(pid) {
            return Err(Failure::Broken(format!(
                "the server died after the storm of {opened} clients ended"
            )));
        }
        if Instant::now() >= deadline {
            return Err(Failure::Short(format!(
                "{} s after the storm's {opened} clients closed, a new client is still not \
                 served (last attempt: {attempt})",
                RECOVERY_LIMIT.as_secs()
            )));
        }
        thread::sleep(RETRY_PAUSE);
    }
    let refused = if failed > 0 {
        format!(" ({failed} more could not connect)")
    } else {
        String::new()
    };
    Ok(format!(
        "{opened} clients on {limit} descriptors{refused}: server CPU {:.1}% of a core while \
         they idled (limit {:.0}%); served again {:.0} ms after they left",
        share * 100.0,
        STORM_CPU_LIMIT * 100.0,
        ended.elapsed().as_secs_f64() * 1e3
    ))
}

// ---- sigterm-mid-transfer --------------------------------------------------

/// How a server stood when we last looked after SIGTERM.
enum Exit {
    /// Our child, exited with this status.
    Status(ExitStatus),
    /// Not our child, and no longer running.
    Gone,
    /// Still running.
    Running,
}

/// A client echoes [`BEFORE_SIGTERM`] bytes; SIGTERM; new connections must
/// not be served; the client sends [`AFTER_SIGTERM`] more, half-closes and
/// must get every byte and EOF; the server must exit (0, when we can see
/// it) within the grace period. `exited(d)` waits up to `d` for the exit.
fn sigterm_mid_transfer(
    addr: SocketAddr,
    pid: u32,
    exited: &mut dyn FnMut(Duration) -> Exit,
) -> CaseResult {
    let data = Arc::new(pseudo_random(BEFORE_SIGTERM + AFTER_SIGTERM, 0x5157_7e12));
    let mut client = connect(addr, "client")?;
    let (go, wait_go) = mpsc::channel::<()>();
    let writer = {
        let mut out = client
            .try_clone()
            .map_err(|e| format!("cannot clone the client socket: {e}"))?;
        let data = data.clone();
        thread::Builder::new()
            .name("sigterm-writer".into())
            .spawn(move || -> Result<(), String> {
                let stuck = |at: usize, e: std::io::Error| {
                    format!("writer: stuck after {at} of {} bytes: {e}", data.len())
                };
                out.write_all(&data[..BEFORE_SIGTERM])
                    .map_err(|e| stuck(0, e))?;
                // Sent once SIGTERM is out and new connections were probed;
                // dropped (Err) when the fault gave up.
                if wait_go.recv_timeout(Duration::from_secs(30)).is_err() {
                    return Ok(());
                }
                let mut at = BEFORE_SIGTERM;
                for chunk in data[BEFORE_SIGTERM..].chunks(256 << 10) {
                    out.write_all(chunk).map_err(|e| stuck(at, e))?;
                    at += chunk.len();
                }
                out.shutdown(Shutdown::Write)
                    .map_err(|e| format!("writer: shutdown(Write) failed: {e}"))
            })
            .map_err(|e| format!("cannot start a writer thread: {e}"))?
    };
    let guard = ShutOnDrop(client.try_clone().ok());

    let mut got = 0usize;
    read_verified(
        &mut client,
        &data,
        &mut got,
        BEFORE_SIGTERM,
        "before SIGTERM",
    )?;

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .map_err(|e| Failure::Broken(format!("cannot send SIGTERM to pid {pid}: {e}")))?;
    let signalled = Instant::now();

    // New connections: refused or closed is the answer we want. One served
    // at first may have raced the signal (delivery, then the model's loop
    // noticing it, take a moment), so probing goes on; still served when
    // the phase ends is breakage. Left in the backlog, the last probe is
    // held and checked once the server is gone.
    let phase_end = signalled + PROBE_PHASE;
    let (mut turned_away, mut held, mut last_served) = (None, None, None);
    while Instant::now() < phase_end {
        match held_probe(addr, remaining(phase_end, Duration::from_millis(250))) {
            (Probe::Served, _) => last_served = Some(signalled.elapsed()),
            (p @ (Probe::Refused | Probe::Closed), _) => {
                turned_away = Some((p, signalled.elapsed()));
                break;
            }
            (Probe::Ignored, s) => {
                held = s;
                last_served = None;
            }
        }
        thread::sleep(RETRY_PAUSE);
    }
    if let (None, Some(at)) = (turned_away, last_served) {
        return Err(Failure::Broken(format!(
            "a connection made {:.0} ms after SIGTERM was served (its byte echoed), and none \
             was turned away within {} s: the server still accepts",
            at.as_secs_f64() * 1e3,
            PROBE_PHASE.as_secs()
        )));
    }

    let _ = go.send(());
    read_verified(&mut client, &data, &mut got, data.len(), "after SIGTERM")?;
    expect_eof(&mut client, data.len())?;
    join_bounded(writer, "writer")?;
    drop(guard);
    drop(client);

    let limit = echo_protocol::GRACE_PERIOD + EXIT_MARGIN;
    let exit = exited(limit.saturating_sub(signalled.elapsed()));
    let took = signalled.elapsed();
    let how = match exit {
        Exit::Running => {
            return Err(Failure::Short(format!(
                "every byte came back, but the server was still running {:.1} s after SIGTERM \
                 (grace period {} s)",
                took.as_secs_f64(),
                echo_protocol::GRACE_PERIOD.as_secs()
            )));
        }
        Exit::Status(status) if !status.success() => {
            return Err(Failure::Broken(format!(
                "every byte came back, but the server exited with {status} after SIGTERM \
                 (expected 0)"
            )));
        }
        Exit::Status(_) => "exited 0",
        Exit::Gone => "was gone (exit status not visible: not our child)",
    };

    let new_conns = match (turned_away, held) {
        (Some((p, after)), _) => format!(
            "new connections {} from {:.0} ms after SIGTERM{}",
            match p {
                Probe::Refused => "refused",
                _ => "closed unanswered",
            },
            after.as_secs_f64() * 1e3,
            match last_served {
                Some(at) => format!(" (one at {:.0} ms still served)", at.as_secs_f64() * 1e3),
                None => String::new(),
            }
        ),
        (None, Some(mut s)) => {
            let mut byte = [0u8; 1];
            match s.read(&mut byte) {
                Ok(1) => {
                    return Err(Failure::Broken(
                        "a connection made after SIGTERM was served before the server exited"
                            .into(),
                    ));
                }
                _ => "a connection made after SIGTERM waited unserved, then was closed".into(),
            }
        }
        (None, None) => "new connections could not connect".into(),
    };
    Ok(format!(
        "{} MiB echoed across SIGTERM, then EOF; {new_conns}; server {how} {:.2} s after SIGTERM",
        data.len() >> 20,
        took.as_secs_f64()
    ))
}

/// Like [`probe`], but hands back the connection when it was neither served
/// nor closed, so that the caller can see what becomes of it.
fn held_probe(addr: SocketAddr, wait: Duration) -> (Probe, Option<TcpStream>) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, wait) else {
        return (Probe::Refused, None);
    };
    if s.set_read_timeout(Some(wait)).is_err() || s.write_all(b"?").is_err() {
        return (Probe::Closed, None);
    }
    let mut byte = [0u8; 1];
    loop {
        return match s.read(&mut byte) {
            Ok(1) if byte[0] == b'?' => (Probe::Served, None),
            Ok(_) => (Probe::Closed, None),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => {
                let _ = s.set_read_timeout(Some(IO_TIMEOUT));
                (Probe::Ignored, Some(s))
            }
            Err(_) => (Probe::Closed, None),
        };
    }
}

/// Reads until `data[..upto]` has come back (from `*got` on), comparing
/// each chunk as it arrives. Lost or wrong bytes are breakage; a stall is a
/// shortfall.
fn read_verified(
    s: &mut TcpStream,
    data: &[u8],
    got: &mut usize,
    upto: usize,
    when: &str,
) -> Result<(), Failure> {
    let mut buf = vec![0u8; 256 << 10];
    s.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| format!("cannot set a read timeout: {e}"))?;
    while *got < upto {
        let want = buf.len().min(upto - *got);
        match s.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(Failure::Broken(format!(
                    "{when}: the server closed the connection after {} of {} bytes came back \
                     (bytes lost)",
                    *got,
                    data.len()
                )));
            }
            Ok(n) => {
                if buf[..n] != data[*got..*got + n] {
                    let i = first_difference(&buf[..n], &data[*got..*got + n]);
                    return Err(Failure::Broken(format!(
                        "{when}: first wrong byte at offset {}",
                        *got + i
                    )));
                }
                *got += n;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                return Err(Failure::Short(format!(
                    "{when}: only {} of {} bytes came back; nothing more within {} s",
                    *got,
                    data.len(),
                    IO_TIMEOUT.as_secs()
                )));
            }
            Err(e) => {
                return Err(Failure::Broken(format!(
                    "{when}: read failed after {} of {} bytes came back: {e} (bytes lost)",
                    *got,
                    data.len()
                )));
            }
        }
    }
    Ok(())
}

fn expect_eof(s: &mut TcpStream, total: usize) -> Result<(), Failure> {
    let mut extra = [0u8; 4096];
    loop {
        return match s.read(&mut extra) {
            Ok(0) => Ok(()),
            Ok(n) => Err(Failure::Broken(format!(
                "after all {total} bytes came back, {n} extra bytes instead of EOF"
            ))),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => Err(Failure::Short(format!(
                "all {total} bytes came back but no EOF within {} s of the client's half-close",
                IO_TIMEOUT.as_secs()
            ))),
            Err(e) => Err(Failure::Broken(format!(
                "reading EOF after all {total} bytes came back failed: {e}"
            ))),
        };
    }
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(0)
}

/// Shuts a socket down when dropped, so that a thread blocked on a clone of
/// it wakes up (EPIPE or EOF) when a fault ends early.
struct ShutOnDrop(Option<TcpStream>);

impl Drop for ShutOnDrop {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Joins a thread that is done or about to be, waiting at most
/// [`IO_TIMEOUT`].
fn join_bounded(handle: JoinHandle<Result<(), String>>, what: &str) -> Result<(), Failure> {
    let deadline = Instant::now() + IO_TIMEOUT;
    while !handle.is_finished() {
        if Instant::now() >= deadline {
            return Err(Failure::Short(format!(
                "{what}: still running {} s after the echo was complete",
                IO_TIMEOUT.as_secs()
            )));
        }
        thread::sleep(Duration::from_millis(2));
    }
    handle
        .join()
        .unwrap_or_else(|_| Err(format!("{what}: panicked")))
        .map_err(Failure::Short)
}

// ---- soak ------------------------------------------------------------------

/// What the soak's threads share.
struct SoakState {
    /// Bytes verified so far, over every connection.
    verified: AtomicU64,
    /// Set when the soak gives up: threads stop at their next timeout.
    abort: AtomicBool,
}

/// [`SOAK_BYTES`] over [`SOAK_CONNS`] concurrent connections, every byte
/// verified, the server's PSS watched when its pid is known.
fn soak(addr: SocketAddr, pid: Option<u32>) -> CaseResult {
    let per_conn = SOAK_BYTES / SOAK_CONNS;
    let baseline = match pid {
        Some(pid) => Some(
            tree::pss_bytes(pid)
                .ok_or_else(|| format!("cannot read the PSS of server pid {pid} from /proc"))?,
        ),
        None => None,
    };
    let state = Arc::new(SoakState {
        verified: AtomicU64::new(0),
        abort: AtomicBool::new(false),
    });
    let mut sockets = Vec::new();
    let mut threads: Vec<JoinHandle<Result<(), Failure>>> = Vec::new();
    for i in 0..SOAK_CONNS {
        let s = connect(addr, &format!("connection {i}"))?;
        // Short timeouts: a blocked thread looks at `abort` every second.
        // How long a stall may last is the monitor's business.
        let tick = Some(Duration::from_secs(1));
        s.set_read_timeout(tick)
            .and_then(|()| s.set_write_timeout(tick))
            .map_err(|e| format!("connection {i}: cannot set timeouts: {e}"))?;
        let pattern = Arc::new(pseudo_random(PATTERN_LEN, 0x50a4_0000 + i));
        let clone = |s: &TcpStream| {
            s.try_clone()
                .map_err(|e| format!("connection {i}: cannot clone the socket: {e}"))
        };
        let (w, r) = (clone(&s)?, clone(&s)?);
        sockets.push(s);
        for (role, body) in [
            (
                "writer",
                Box::new({
                    let (pattern, state) = (pattern.clone(), state.clone());
                    move || soak_writer(w, i, &pattern, per_conn, &state)
                }) as Box<dyn FnOnce() -> Result<(), Failure> + Send>,
            ),
            (
                "reader",
                Box::new({
                    let (pattern, state) = (pattern.clone(), state.clone());
                    move || soak_reader(r, i, &pattern, per_conn, &state)
                }),
            ),
        ] {
            let handle = thread::Builder::new()
                .name(format!("soak-{role}-{i}"))
                .spawn(body)
                .map_err(|e| format!("cannot start a soak thread: {e}"))?;
            threads.push(handle);
        }
    }

    let started = Instant::now();
    let mut last = (0u64, Instant::now());
    let mut peak_growth = 0u64;
    let mut verdict: Option<Failure> = None;
    while !threads.iter().all(JoinHandle::is_finished) {
        // A thread that failed set `abort`: its error is the verdict.
        if state.abort.load(Ordering::SeqCst) {
            break;
        }
        let now = Instant::now();
        let done = state.verified.load(Ordering::SeqCst);
        if done != last.0 {
            last = (done, now);
        }
        if let (Some(pid), Some(base)) = (pid, baseline) {
            let Some(pss) = tree::pss_bytes(pid) else {
                verdict = Some(Failure::Broken(format!(
                    "server pid {pid} vanished after {} MiB of the soak",
                    done >> 20
                )));
                break;
            };
            peak_growth = peak_growth.max(pss.saturating_sub(base));
            if peak_growth > SOAK_PSS_LIMIT {
                verdict = Some(Failure::Broken(format!(
                    "server memory (PSS) grew by {} MiB after {} MiB of the soak (limit {} MiB): \
                     it grows with the traffic instead of staying bounded",
                    peak_growth >> 20,
                    done >> 20,
                    SOAK_PSS_LIMIT >> 20
                )));
                break;
            }
        }
        if now - last.1 > SOAK_STALL {
            verdict = Some(Failure::Short(format!(
                "no byte came back for {} s, after {} of {} MiB",
                SOAK_STALL.as_secs(),
                done >> 20,
                SOAK_BYTES >> 20
            )));
            break;
        }
        if now - started > SOAK_DEADLINE {
            verdict = Some(Failure::Short(format!(
                "{} of {} MiB after {} s",
                done >> 20,
                SOAK_BYTES >> 20,
                SOAK_DEADLINE.as_secs()
            )));
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let elapsed = started.elapsed();
    // Stop whatever still runs: shutdown wakes a blocked read or write at
    // once, `abort` tells the thread not to call that a failure.
    if verdict.is_some() || state.abort.load(Ordering::SeqCst) {
        state.abort.store(true, Ordering::SeqCst);
        for s in &sockets {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
    // The first failure a thread reported is the cause; later ones are its
    // consequences (a reset seen on the other connections, say).
    let mut first: Option<Failure> = None;
    for t in threads {
        let r = t
            .join()
            .unwrap_or_else(|_| Err(Failure::Broken("a soak thread panicked".into())));
        if let (Err(e), None) = (r, &first) {
            first = Some(e);
        }
    }
    if let Some(v) = verdict {
        return Err(v);
    }
    if let Some(e) = first {
        return Err(e);
    }
    // Memory at the very end counts too: a leak shows most there.
    if let (Some(pid), Some(base)) = (pid, baseline) {
        if let Some(pss) = tree::pss_bytes(pid) {
            peak_growth = peak_growth.max(pss.saturating_sub(base));
        }
        if peak_growth > SOAK_PSS_LIMIT {
            return Err(Failure::Broken(format!(
                "server memory (PSS) grew by {} MiB over the soak (limit {} MiB)",
                peak_growth >> 20,
                SOAK_PSS_LIMIT >> 20
            )));
        }
    }
    let memory = match baseline {
        Some(_) => format!(
            "PSS growth peak {:.1} MiB (limit {} MiB)",
            peak_growth as f64 / (1 << 20) as f64,
            SOAK_PSS_LIMIT >> 20
        ),
        None => "PSS not checked (no pid)".into(),
    };
    Ok(format!(
        "{} MiB over {SOAK_CONNS} connections, every byte back in order, in {:.1} s \
         ({:.0} MiB/s); {memory}",
        SOAK_BYTES >> 20,
        elapsed.as_secs_f64(),
        (SOAK_BYTES >> 20) as f64 / elapsed.as_secs_f64()
    ))
}

/// The part of the repeated pattern at stream offset `pos`, at most `max`
/// bytes long.
fn pattern_at(pattern: &[u8], pos: u64, max: usize) -> &[u8] {
    let off = (pos % pattern.len() as u64) as usize;
    &pattern[off..pattern.len().min(off + max)]
}

fn soak_writer(
    mut s: TcpStream,
    conn: u64,
    pattern: &[u8],
    total: u64,
    state: &SoakState,
) -> Result<(), Failure> {
    let mut sent = 0u64;
    while sent < total {
        let chunk = pattern_at(pattern, sent, (256 << 10).min((total - sent) as usize));
        match s.write(chunk) {
            Ok(0) => {
                return Err(Failure::Broken(format!(
                    "connection {conn}: the server stopped taking bytes after {sent}"
                )));
            }
            Ok(n) => sent += n as u64,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) if state.abort.load(Ordering::SeqCst) => return Ok(()),
            Err(e) if is_timeout(&e) => {}
            Err(e) => {
                state.abort.store(true, Ordering::SeqCst);
                return Err(Failure::Broken(format!(
                    "connection {conn}: write failed after {sent} of {total} bytes: {e}"
                )));
            }
        }
    }
    s.shutdown(Shutdown::Write)
        .map_err(|e| Failure::Broken(format!("connection {conn}: shutdown(Write) failed: {e}")))
}

fn soak_reader(
    mut s: TcpStream,
    conn: u64,
    pattern: &[u8],
    total: u64,
    state: &SoakState,
) -> Result<(), Failure> {
    let mut buf = vec![0u8; 256 << 10];
    let mut got = 0u64;
    let fail = |f: Failure| {
        state.abort.store(true, Ordering::SeqCst);
        Err(f)
    };
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) if got == total => return Ok(()),
            Ok(0) => {
                return fail(Failure::Broken(format!(
                    "connection {conn}: EOF after {got} of {total} bytes: {} bytes lost",
                    total - got
                )));
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) if state.abort.load(Ordering::SeqCst) => return Ok(()),
            Err(e) if is_timeout(&e) => continue,
            Err(e) => {
                return fail(Failure::Broken(format!(
                    "connection {conn}: read failed after {got} of {total} bytes: {e}"
                )));
            }
        };
        if got + n as u64 > total {
            return fail(Failure::Broken(format!(
                "connection {conn}: {} bytes more than the {total} sent",
                got + n as u64 - total
            )));
        }
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let expected = pattern_at(pattern, got, rest.len());
            let (head, tail) = rest.split_at(expected.len());
            if head != expected {
                return fail(Failure::Broken(format!(
                    "connection {conn}: first wrong byte at offset {}",
                    got + first_difference(head, expected) as u64
                )));
            }
            got += head.len() as u64;
            state
                .verified
                .fetch_add(head.len() as u64, Ordering::SeqCst);
            rest = tail;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CASE_WIDTH, LABEL_WIDTH};

    #[test]
    fn the_pattern_wraps_around_seamlessly() {
        let pattern: Vec<u8> = (0..10).collect();
        assert_eq!(pattern_at(&pattern, 0, 4), &[0, 1, 2, 3]);
        assert_eq!(pattern_at(&pattern, 8, 4), &[8, 9]);
        assert_eq!(pattern_at(&pattern, 23, 100), &[3, 4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn not_run_is_neither_passed_nor_failed() {
        let outcome = |case, verdict| Outcome {
            case,
            verdict,
            detail: String::new(),
            elapsed: Duration::ZERO,
        };
        let mut report = Report {
            outcomes: vec![
                outcome("soak", Verdict::Pass),
                outcome("max-conns", Verdict::NotRun),
            ],
        };
        assert_eq!(
            (report.passed(), report.failed(), report.not_run()),
            (1, 0, 1)
        );
        assert!(report.ok());
        assert!(
            report
                .to_string()
                .ends_with("\n1 passed, 0 failed, 1 not run")
        );
        report
            .outcomes
            .push(outcome("descriptor-storm", Verdict::Fail));
        assert!(!report.ok());
        let line = format!(
            "{:<LABEL_WIDTH$}  {:<CASE_WIDTH$}  (0.00 s)",
            "not run", "max-conns"
        );
        assert!(report.to_string().contains(&line), "{report}");
    }

    #[test]
    fn unknown_names_are_setup_errors() {
        let target = FaultTarget::External {
            addr: "127.0.0.1:9".parse().unwrap(),
            pid: None,
            max_conns: None,
        };
        let err = run_faults(&target, &["soaks".into()], None, &mut |_| {}).unwrap_err();
        assert!(err.contains("unknown name 'soaks'"), "{err}");
        let only = ["small".to_string()];
        let err = run_faults(&target, &[], Some(&only), &mut |_| {}).unwrap_err();
        assert!(err.contains("unknown fault 'small'"), "{err}");
    }
}
