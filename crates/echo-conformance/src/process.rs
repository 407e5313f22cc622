//! A server binary as a child process: spawned, awaited on its readiness
//! line, signalled, and never leaked.
//!
//! Readiness is the `listening on <addr>` line on stdout, not a sleep: the
//! child binds port 0 and tells us the real port. A thread keeps draining
//! stdout after that line, because a child blocked on a full pipe would look
//! like a hung server. Waiting for exit polls `waitpid(2)` (`try_wait`) with
//! a deadline; std has no timed wait, and a `SIGCHLD` handler would be global
//! state in a library.
//!
//! The server runs in a process group of its own (`setpgid(2)` through
//! `CommandExt::process_group`), so that stopping it stops whatever it
//! forked: SIGTERM goes to the server alone (the contract), then SIGKILL to
//! the whole group (`kill(2)` with a negative pid) and, when the server was
//! spawned into a [`Cgroup`], to every task left in the group, so nothing
//! survives into the next repetition. A double-forked process that made
//! its own session escapes the process group; only the cgroup catches it.
//! The price of the own group: Ctrl-C at a terminal reaches us, not the
//! server, so our `Drop` must do the stopping.

use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::Target;
use crate::cgroup::Cgroup;
use crate::tree;

/// How long a server may take to print its readiness line.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SIGTERM.
const TERM_TIMEOUT: Duration = Duration::from_secs(8);

/// A server child process that has printed its readiness line.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    /// The control group the server was spawned into, if any; dropped
    /// (tasks killed, directories removed) after the server is stopped.
    cgroup: Option<Cgroup>,
}

impl ServerProcess {
    /// Spawns `bin args... --addr 127.0.0.1:0`.
    pub fn spawn(bin: &Path, args: &[&str]) -> Result<ServerProcess, String> {
        let mut cmd = Command::new(bin);
        cmd.args(args).args(["--addr", "127.0.0.1:0"]);
        ServerProcess::spawn_command(cmd)
    }

    /// Spawns a caller-built command (the caller sets `--addr` and the rest;
    /// this sets stdout piped, stdin null, stderr inherited) and waits up to
    /// 10 s for the line `listening on <addr>` on stdout. If the child exits
    /// first: `Err` with its exit status. An unspecified announced address
    /// (`0.0.0.0`) is replaced by loopback, so that it can be connected to.
    pub fn spawn_command(cmd: Command) -> Result<ServerProcess, String> {
        ServerProcess::spawn_inner(cmd, None)
    }

    /// Like [`spawn_command`](Self::spawn_command), with the child moved into
    /// `cgroup` before it execs; the group then lives as long as the server
    /// and is emptied and removed when it is stopped.
    pub fn spawn_command_in(mut cmd: Command, cgroup: Cgroup) -> Result<ServerProcess, String> {
        cgroup.join_before_exec(&mut cmd);
        ServerProcess::spawn_inner(cmd, Some(cgroup))
    }

    fn spawn_inner(mut cmd: Command, cgroup: Option<Cgroup>) -> Result<ServerProcess, String> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let program = describe(&cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        let stdout = child.stdout.take().expect("stdout was set to piped");
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("server-stdout".into())
            .spawn(move || drain(stdout, tx))
            .map_err(|e| format!("cannot start a thread to read {program}'s stdout: {e}"))?;

        let deadline = Instant::now() + READY_TIMEOUT;
        let why = loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Ok(addr)) => {
                    return Ok(ServerProcess {
                        child,
                        addr,
                        cgroup,
                    });
                }
                Ok(Err(Unready::BadLine(why))) => {
                    kill_group(&mut child);
                    return Err(format!("{program} {why}"));
                }
                Ok(Err(Unready::Closed)) => {
                    break "closed its stdout before printing \"listening on <addr>\"".to_string();
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    break "stopped being readable".to_string();
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "{program} exited with {status} before printing \"listening on <addr>\""
                ));
            }
            if Instant::now() >= deadline {
                break format!(
                    "printed no \"listening on <addr>\" line within {} s",
                    READY_TIMEOUT.as_secs()
                );
            }
        };
        // Closing stdout usually means the child is exiting: report its
        // status, which says more than the closed pipe.
        if let Some(status) = wait_child(&mut child, Duration::from_secs(2)) {
            return Err(format!(
                "{program} exited with {status} before printing \"listening on <addr>\""
            ));
        }
        kill_group(&mut child);
        Err(format!("{program} {why}; killed it"))
    }

    /// The address the server announced.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The control group the server runs in, if it was spawned into one.
    pub fn cgroup(&self) -> Option<&Cgroup> {
        self.cgroup.as_ref()
    }

    /// Mutable access to the control group, to reset its peaks.
    pub fn cgroup_mut(&mut self) -> Option<&mut Cgroup> {
        self.cgroup.as_mut()
    }

    /// A client connected to this server, with 5 s read and write timeouts
    /// and `TCP_NODELAY`, for tests of a model's own behaviour. Panics if
    /// the connection fails: in a test that is the failure to report.
    pub fn client(&self) -> TcpStream {
        let timeout = Duration::from_secs(5);
        let stream = TcpStream::connect_timeout(&connectable(self.addr), timeout)
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.addr));
        stream
            .set_read_timeout(Some(timeout))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(timeout))
            .expect("write timeout");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        stream
    }

    /// The suite's view of this server, with its pid.
    pub fn target(&self) -> Target {
        Target {
            addr: self.addr,
            pid: Some(self.pid()),
        }
    }

    /// Polls for exit up to `d`; `Some(status)` if it has exited.
    pub fn wait_timeout(&mut self, d: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, d)
    }

    /// Sends SIGTERM without waiting (a no-op once the child was reaped, so
    /// that a recycled pid is never signalled).
    pub fn sigterm(&mut self) -> Result<(), String> {
        self.signal(Signal::SIGTERM)
    }

    fn signal(&mut self, signal: Signal) -> Result<(), String> {
        if let Ok(Some(_)) = self.child.try_wait() {
            return Ok(());
        }
        let pid = Pid::from_raw(self.child.id() as i32);
        kill(pid, signal).map_err(|e| format!("cannot send {signal} to {pid}: {e}"))
    }

    /// SIGTERM to the server, then waits up to 8 s; on timeout SIGKILL and
    /// `Err("did not exit within 8 s of SIGTERM")`. Either way, whatever is
    /// left of its process group and of its cgroup (children still
    /// finishing, say) is then killed: the exit status is the server's.
    pub fn terminate(self) -> Result<ExitStatus, String> {
        self.stop().status
    }

    /// [`terminate`](Self::terminate), and what the server left behind:
    /// once it has exited, the live processes (not zombies) of its group
    /// and of its cgroup still there after [`LEFT_SETTLE`] (a child that was told to go needs
    /// a moment to die). A server that exits without ending its children
    /// shows here; they are then killed like everything else.
    pub fn stop(mut self) -> Stopped {
        if let Err(e) = self.sigterm() {
            return Stopped {
                status: Err(e),
                left_behind: Vec::new(),
            };
        }
        let Some(status) = self.wait_timeout(TERM_TIMEOUT) else {
            // Drop kills the rest: the group, then the cgroup.
            return Stopped {
                status: Err(format!(
                    "did not exit within {} s of SIGTERM",
                    TERM_TIMEOUT.as_secs()
                )),
                left_behind: Vec::new(),
            };
        };
        let deadline = Instant::now() + LEFT_SETTLE;
        let left_behind = loop {
            let mut left = tree::group(self.pid());
            if let Some(cg) = &self.cgroup {
                left.extend(cg.procs());
            }
            // A zombie has already exited; whoever adopted it reaps it.
            left.retain(|&p| tree::stat(p).is_some_and(|s| s.state != 'Z'));
            left.sort_unstable();
            left.dedup();
            if left.is_empty() || Instant::now() >= deadline {
                break left;
            }
            thread::sleep(Duration::from_millis(10));
        };
        Stopped {
            status: Ok(status),
            left_behind,
        }
    }
}

/// How long [`ServerProcess::stop`] lets the server's children die after
/// the server itself exited before it counts them as left behind.
pub const LEFT_SETTLE: Duration = Duration::from_secs(1);

/// What [`ServerProcess::stop`] found.
#[derive(Debug)]
pub struct Stopped {
    /// The server's exit status, or why it did not exit.
    pub status: Result<ExitStatus, String>,
    /// Processes of the server's group or cgroup still there
    /// [`LEFT_SETTLE`] after it exited (then killed).
    pub left_behind: Vec<u32>,
}

impl Drop for ServerProcess {
    /// A failing test must not leave a server behind holding a port, nor a
    /// forked child burning CPU in the next repetition.
    fn drop(&mut self) {
        kill_group(&mut self.child);
        // Dropping the cgroup kills its remaining tasks (those that left the
        // process group too) and removes its directories.
        self.cgroup.take();
    }
}

/// SIGKILL to the child's whole process group, then reaps the child and
/// waits (bounded) until no member of the group is left. The group id is
/// the child's pid; signalling it after the child was reaped is safe while
/// any member lives, since a pid is not reused while a group bears it.
fn kill_group(child: &mut Child) {
    let group = Pid::from_raw(-(child.id() as i32));
    let _ = kill(group, Signal::SIGKILL);
    let _ = child.wait();
    // Members die asynchronously; zombies among them are reaped by
    // whichever process adopted them. kill(-pgid, 0) fails with ESRCH once
    // the group is empty.
    let deadline = Instant::now() + Duration::from_secs(2);
    while kill(group, None).is_ok() && Instant::now() < deadline {
        let _ = kill(group, Signal::SIGKILL);
        thread::sleep(Duration::from_millis(5));
    }
}

/// Why no address came from the readiness line.
enum Unready {
    /// Stdout reached EOF first; the exit status will say more.
    Closed,
    /// The line was there but unusable.
    BadLine(String),
}

/// Reads stdout line by line: sends the announced address (or why there is
/// none), then keeps reading until EOF so the child never blocks on a full
/// pipe. Not joined: children forked by the server may hold the pipe open
/// long after the server itself is gone.
fn drain(stdout: ChildStdout, tx: mpsc::Sender<Result<SocketAddr, Unready>>) {
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    let mut announced = false;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => {
                if !announced {
                    let _ = tx.send(Err(Unready::Closed));
                }
                return;
            }
            Ok(_) if announced => {}
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                if let Some(rest) = text.trim_end().strip_prefix("listening on ") {
                    announced = true;
                    let parsed = rest.parse::<SocketAddr>().map(connectable).map_err(|e| {
                        Unready::BadLine(format!("announced a bad address {rest:?}: {e}"))
                    });
                    let _ = tx.send(parsed);
                }
            }
        }
    }
}

fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

fn wait_child(child: &mut Child, d: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + d;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(_) => return None,
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        thread::sleep((deadline - now).min(Duration::from_millis(10)));
    }
}

/// `program arg arg…`, for messages.
fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a short-lived command printed, and how it ended.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs a command to completion with stdin null and both outputs captured;
/// kills it and returns `Err` if it is still running after `limit`.
/// Makes `cmd`'s process start with `RLIMIT_NOFILE` at `limit`, soft and
/// hard (the contract raises soft to hard, so both must be set): how the
/// suite runs a server out of descriptors.
pub(crate) fn limit_nofile(cmd: &mut Command, limit: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed; it makes one `setrlimit(2)`
    // call (async-signal-safe) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            use nix::sys::resource::{Resource, setrlimit};
            setrlimit(Resource::RLIMIT_NOFILE, limit, limit).map_err(std::io::Error::from)
        });
    }
}

pub(crate) fn run_bounded(mut cmd: Command, limit: Duration) -> Result<Finished, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let program = describe(&cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    // Read both pipes in threads: a child that fills one while we wait on
    // the other would otherwise never finish.
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let Some(status) = wait_child(&mut child, limit) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!(
            "{program} was still running after {} s; killed it",
            limit.as_secs()
        ));
    };
    // The pipes reach EOF once the child is gone, unless it left a process
    // behind holding them: take what arrived within a second.
    let text =
        |rx: mpsc::Receiver<String>| rx.recv_timeout(Duration::from_secs(1)).unwrap_or_default();
    Ok(Finished {
        status,
        stdout: text(stdout),
        stderr: text(stderr),
    })
}

fn collect(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
        });
    }
    rx
}

#[cfg(test)]
mod tests {
    //! These use `sh` as a stand-in server: the model crates exercise the
    //! real binaries.
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn readiness_line_is_parsed_and_terminate_signals() {
        let server =
            ServerProcess::spawn_command(sh("echo 'listening on 0.0.0.0:4567'; exec sleep 30"))
                .expect("the line was printed");
        assert_eq!(server.addr(), "127.0.0.1:4567".parse().unwrap());
        assert_eq!(server.target().pid, Some(server.pid()));
        let status = server.terminate().expect("sleep dies of SIGTERM");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(Signal::SIGTERM as i32));
    }

    #[test]
    fn early_exit_is_reported_with_its_status() {
        let err = ServerProcess::spawn_command(sh("exit 2")).unwrap_err();
        assert!(err.contains("exit status: 2"), "{err}");
        let err =
            ServerProcess::spawn_command(sh("echo 'listening on nowhere'; exit 0")).unwrap_err();
        assert!(err.contains("bad address \"nowhere\""), "{err}");
    }

    #[test]
    fn wait_timeout_and_drop_never_leak() {
        let mut server =
            ServerProcess::spawn_command(sh("echo 'listening on 127.0.0.1:1'; exec sleep 30"))
                .unwrap();
        assert_eq!(server.wait_timeout(Duration::from_millis(50)), None);
        let pid = server.pid();
        drop(server);
        // Reaped by drop: the pid no longer names a process of ours.
        let gone =
            kill(Pid::from_raw(pid as i32), None).is_err() || crate::tree::stat(pid).is_none();
        assert!(gone, "pid {pid} still exists after drop");
    }

    #[test]
    fn terminate_stops_the_whole_process_group() {
        // SIGTERM reaches the shell alone; its background child would
        // outlive it, orphaned, without the group kill.
        let server =
            ServerProcess::spawn_command(sh("sleep 30 & echo \"listening on 127.0.0.1:1\"; wait"))
                .unwrap();
        let pgid = server.pid() as i32;
        let members = || crate::tree::pids(server.pid());
        let deadline = Instant::now() + Duration::from_secs(5);
        while members().len() < 2 {
            assert!(
                Instant::now() < deadline,
                "the background sleep never started"
            );
            thread::sleep(Duration::from_millis(5));
        }
        let sleeper = members()[1];
        let _ = server.terminate();
        assert!(
            !crate::tree::alive(sleeper),
            "pid {sleeper} of group {pgid} survived terminate"
        );
        assert!(
            kill(Pid::from_raw(-pgid), None).is_err(),
            "group {pgid} still has members"
        );
    }

    #[test]
    fn stop_names_what_the_server_left_behind_and_only_that() {
        // A shell that exits on SIGTERM without ending its background
        // child: the child outlives it, in its group.
        let server =
            ServerProcess::spawn_command(sh("sleep 30 & echo \"listening on 127.0.0.1:1\"; wait"))
                .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while crate::tree::pids(server.pid()).len() < 2 {
            assert!(
                Instant::now() < deadline,
                "the background sleep never started"
            );
            thread::sleep(Duration::from_millis(5));
        }
        let sleeper = crate::tree::pids(server.pid())[1];
        let stopped = server.stop();
        assert!(stopped.status.is_ok(), "{:?}", stopped.status);
        assert_eq!(stopped.left_behind, vec![sleeper]);
        assert!(
            !crate::tree::alive(sleeper),
            "the straggler must still be killed"
        );

        // A server that is the whole group leaves nothing.
        let server =
            ServerProcess::spawn_command(sh("echo \"listening on 127.0.0.1:1\"; exec sleep 30"))
                .unwrap();
        let stopped = server.stop();
        assert!(stopped.status.is_ok(), "{:?}", stopped.status);
        assert_eq!(stopped.left_behind, Vec::<u32>::new());
    }

    #[test]
    fn bounded_run_captures_and_kills() {
        let out =
            run_bounded(sh("echo out; echo err >&2; exit 3"), Duration::from_secs(5)).unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str()),
            ("out\n", "err\n")
        );
        let err = run_bounded(sh("exec sleep 30"), Duration::from_millis(200)).unwrap_err();
        assert!(err.contains("still running"), "{err}");
    }
}
