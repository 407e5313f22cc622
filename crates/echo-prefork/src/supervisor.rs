//! The parent process: it forks the workers, replaces any that die, hands
//! out connections itself for `pass-fd`, and at shutdown stops every
//! hand-off and waits for the workers within the grace period.
//!
//! # Syscalls
//!
//! `fork(2)` per worker, `pidfd_open(2)` for each (a descriptor that
//! becomes readable when the worker exits, so that one `poll(2)` watches
//! the workers, the shutdown eventfd, and for `pass-fd` the listener and
//! the workers' channels), `waitpid(2)` to reap, `kill(2)` after the grace
//! period, `shutdown(2)` with `SHUT_RD` on the listeners to stop every
//! worker's `accept` at once; `accept(2)` for `pass-fd`.
//!
//! # Trade-offs
//!
//! Pidfds rather than `SIGCHLD`: a child's exit is one more readable
//! descriptor in the loop, with no signal handler and no self-pipe. A
//! worker that dies young is replaced after a delay that doubles, so a
//! worker that crashes at once cannot make the parent spin in `fork`. The
//! parent keeps every listener open, so that a dying worker does not take
//! a socket (and the clients in its backlog) with it.

use std::io::{self, Read};
use std::net::{Shutdown, TcpListener};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use echo_protocol::{ACCEPT_BACKOFF, Config, GRACE_PERIOD, accept_error_is_shortage};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, fork, getpid};
use socket2::SockRef;

use crate::board::Board;
use crate::handoff::send_fd;
use crate::worker::close;
use crate::{Handoff, log};

/// A worker that dies younger than this counts as a crash loop: its
/// replacement is delayed, doubling from [`FIRST_RESPAWN_DELAY`] up to
/// [`MAX_RESPAWN_DELAY`], so a worker that dies at once cannot make the
/// parent spin in `fork`.
const MIN_LIFETIME: Duration = Duration::from_secs(1);
const FIRST_RESPAWN_DELAY: Duration = Duration::from_millis(100);
const MAX_RESPAWN_DELAY: Duration = Duration::from_secs(5);

/// The parent's view of one worker slot.
pub(crate) struct Slot {
    /// The running worker, and a pidfd that becomes readable when it exits.
    pub(crate) running: Option<(Pid, OwnedFd)>,
    /// `pass-fd` only: the parent's end of the worker's socket pair.
    pub(crate) chan: Option<UnixStream>,
    pub(crate) started: Instant,
    pub(crate) delay: Duration,
    /// When a dead worker's replacement is due.
    pub(crate) respawn_at: Option<Instant>,
}

pub(crate) struct Pool<'a> {
    pub(crate) config: &'a Config,
    pub(crate) handoff: Handoff,
    /// `shared-accept`: the one listener; `reuseport`: one per slot;
    /// `pass-fd`: the parent's listener. The parent keeps them all, so that
    /// a worker's death does not close its socket (and reset the clients in
    /// its backlog), and so that it can stop them all with one `shutdown`.
    pub(crate) listeners: Vec<TcpListener>,
    pub(crate) board: Board,
    pub(crate) slots: Vec<Slot>,
    /// `pass-fd`: where the round robin over idle workers goes on.
    pub(crate) next: usize,
}

impl<'a> Pool<'a> {
    pub(crate) fn new(
        config: &'a Config,
        handoff: Handoff,
        listeners: Vec<TcpListener>,
        n: usize,
    ) -> io::Result<Pool<'a>> {
        Ok(Pool {
            config,
            handoff,
            listeners,
            board: Board::new(n)?,
            slots: (0..n)
                .map(|_| Slot {
                    running: None,
                    chan: None,
                    started: Instant::now(),
                    delay: Duration::ZERO,
                    respawn_at: None,
                })
                .collect(),
            next: 0,
        })
    }
}

impl Pool<'_> {
    // ANCHOR: spawn
    pub(crate) fn spawn(&mut self, i: usize) -> io::Result<()> {
        let (parent_end, worker_end) = match self.handoff {
            Handoff::PassFd => {
                let (p, w) = UnixStream::pair()?;
                (Some(p), Some(w))
            }
            _ => (None, None),
        };
        let parent = getpid();
        // SAFETY: the child runs `worker`, which follows the rules in the
        // module header ("Fork safety"): only state this thread owns, no
        // other thread's locks, and `_exit` at the end.
        match unsafe { fork() }? {
            ForkResult::Child => {
                // The parent's end of our own channel: held here, it would
                // keep the channel open after the parent closes it.
                if let Some(p) = &parent_end {
                    close(p.as_raw_fd());
                }
                self.worker(i, parent, worker_end)
            }
            ForkResult::Parent { child } => {
                // SAFETY: pidfd_open(2) takes a pid and flags and returns a
                // new descriptor (close-on-exec) or -1; no pointers.
                let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, child.as_raw(), 0) };
                if raw < 0 {
                    let e = io::Error::last_os_error();
                    let _ = kill(child, Signal::SIGKILL);
                    let _ = waitpid(child, None);
                    return Err(io::Error::new(e.kind(), format!("pidfd_open: {e}")));
                }
                // SAFETY: `raw` is a descriptor pidfd_open just returned,
                // owned by nothing else.
                let pidfd = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
                let slot = &mut self.slots[i];
                slot.running = Some((child, pidfd));
                slot.chan = parent_end;
                slot.started = Instant::now();
                slot.respawn_at = None;
                log(self.config, format_args!("worker {i}: pid {child} started"));
                Ok(())
            }
        }
    }
    // ANCHOR_END: spawn

    // ANCHOR: supervise
    /// The parent's loop: reap and replace dead workers, and for `pass-fd`
    /// accept and hand out connections, until shutdown is requested.
    pub(crate) fn supervise(&mut self) -> io::Result<()> {
        loop {
            let now = Instant::now();
            for i in 0..self.slots.len() {
                if self.slots[i].respawn_at.is_some_and(|at| at <= now) {
                    // A failed fork (EAGAIN: out of processes or memory)
                    // is retried later, not the end of the server.
                    if let Err(e) = self.spawn(i) {
                        let slot = &mut self.slots[i];
                        slot.delay = (slot.delay * 2).clamp(FIRST_RESPAWN_DELAY, MAX_RESPAWN_DELAY);
                        slot.respawn_at = Some(now + slot.delay);
                        log(
                            self.config,
                            format_args!("worker {i}: cannot fork: {e}; retrying"),
                        );
                    }
                }
            }
            let listen = self.handoff == Handoff::PassFd && self.idle_worker().is_some();
            let (shutdown_ready, dead, done, accept_ready) = {
                let mut fds = vec![PollFd::new(self.config.shutdown.fd(), PollFlags::POLLIN)];
                let mut owners = Vec::new(); // (slot, is_pidfd)
                for (i, slot) in self.slots.iter().enumerate() {
                    if let Some((_, pidfd)) = &slot.running {
                        fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
                        owners.push((i, true));
                    }
                    if let Some(c) = &slot.chan {
                        fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
                        owners.push((i, false));
                    }
                }
                if listen {
                    fds.push(PollFd::new(self.listeners[0].as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, self.poll_timeout()) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(e.into()),
                }
                let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
                let mut dead = Vec::new();
                let mut done = Vec::new();
                for (fd, &(i, is_pidfd)) in fds[1..].iter().zip(&owners) {
                    if ready(fd) {
                        if is_pidfd { dead.push(i) } else { done.push(i) }
                    }
                }
                let accept_ready = listen && ready(fds.last().expect("the listener"));
                (ready(&fds[0]), dead, done, accept_ready)
            };
            if shutdown_ready || self.config.shutdown.requested() {
                return Ok(());
            }
            for i in done {
                self.worker_idle(i);
            }
            for i in dead {
                self.reap(i);
            }
            if accept_ready {
                self.hand_out();
            }
        }
    }

    fn poll_timeout(&self) -> PollTimeout {
        let next = self.slots.iter().filter_map(|s| s.respawn_at).min();
        match next {
            None => PollTimeout::NONE,
            Some(at) => {
                let ms = at.saturating_duration_since(Instant::now()).as_millis() + 1;
                PollTimeout::try_from(ms.min(60_000) as i32).unwrap_or(PollTimeout::NONE)
            }
        }
    }

    /// A worker exited: reap it, free its busy flag (it may have died
    /// serving), and schedule its replacement, later if it died young.
    fn reap(&mut self, i: usize) {
        let Some((pid, _pidfd)) = self.slots[i].running.take() else {
            return;
        };
        let status = waitpid(pid, None);
        let slot = &mut self.slots[i];
        slot.chan = None;
        self.board.release(i);
        slot.delay = if slot.started.elapsed() < MIN_LIFETIME {
            (slot.delay * 2).clamp(FIRST_RESPAWN_DELAY, MAX_RESPAWN_DELAY)
        } else {
            Duration::ZERO
        };
        slot.respawn_at = Some(Instant::now() + slot.delay);
        log(
            self.config,
            format_args!(
                "worker {i}: pid {pid} ended ({status:?}); replacing it in {} ms",
                slot.delay.as_millis()
            ),
        );
    }

    /// `pass-fd`: bytes from a worker mean "idle again"; EOF means it died
    /// (its pidfd says so too, and `reap` cleans up).
    fn worker_idle(&mut self, i: usize) {
        let Some(chan) = self.slots[i].chan.as_mut() else {
            return;
        };
        let mut bytes = [0u8; 16];
        match chan.read(&mut bytes) {
            Ok(n) if n > 0 => self.board.release(i),
            _ => self.slots[i].chan = None,
        }
    }

    fn idle_worker(&self) -> Option<usize> {
        let n = self.slots.len();
        let flags = self.board.flags();
        (0..n)
            .map(|k| (self.next + k) % n)
            .find(|&i| self.slots[i].chan.is_some() && flags[i].load(Ordering::SeqCst) == 0)
    }

    /// `pass-fd`: accept one connection and pass it to the next idle worker.
    /// Only called when one is idle, so a client beyond N waits in the
    /// listen backlog, as it does with the other hand-offs.
    fn hand_out(&mut self) {
        let (stream, peer) = match self.listeners[0].accept() {
            Ok((stream, peer)) => {
                // Nagle off, or a 64 KiB echo written 16 KiB at a time
                // waits for delayed ACKs: see `echo_protocol::no_delay`.
                echo_protocol::no_delay(&stream);
                (stream, peer)
            }
            Err(e) if accept_error_is_shortage(&e) => {
                log(self.config, format_args!("accept: {e} (backing off)"));
                std::thread::sleep(ACCEPT_BACKOFF);
                return;
            }
            // Transient errors concern that connection only; anything
            // else on a listener only the parent uses would repeat, but a
            // server that stops serving is worse than one that logs.
            Err(e) => {
                log(self.config, format_args!("accept: {e}"));
                return;
            }
        };
        let Some(i) = self.idle_worker() else {
            return;
        };
        if !self.board.try_admit(i, self.config.max_conns) {
            log(
                self.config,
                format_args!(
                    "{peer}: refused, {} connections open",
                    self.config.max_conns
                ),
            );
            return;
        }
        self.next = (i + 1) % self.slots.len();
        let chan = self.slots[i]
            .chan
            .as_ref()
            .expect("an idle worker has a channel");
        // The parent's copy of the descriptor is closed when `stream` drops
        // at the end of this function: the worker's copy is the connection.
        if let Err(e) = send_fd(chan, stream.as_fd().as_raw_fd()) {
            // The worker died between its last "idle" and now; its pidfd
            // will tell. This one client is closed, not served.
            self.board.release(i);
            log(
                self.config,
                format_args!("{peer}: cannot pass to worker {i}: {e}; closed"),
            );
        }
    }
    // ANCHOR_END: supervise

    // ANCHOR: drain
    /// Stops every hand-off at once, then waits for the workers, bounded by
    /// the grace period. `shutdown(SHUT_RD)` on a listening socket takes it
    /// out of the LISTEN state in every process that holds it: new
    /// connections are refused, workers blocked in `accept` wake with
    /// `EINVAL`, and a busy worker gets the same `EINVAL` when it comes
    /// back after its client. (Signalling each worker instead races with a
    /// worker that is just about to block in `accept`.) For `pass-fd`,
    /// closing the listener and the channels does the same. If the
    /// contract's shutdown thread ends the process first (it exits once the
    /// grace period is over), `PR_SET_PDEATHSIG` ends the workers still
    /// serving.
    pub(crate) fn drain(&mut self) {
        match self.handoff {
            Handoff::SharedAccept | Handoff::Reuseport => {
                for l in &self.listeners {
                    let _ = SockRef::from(l).shutdown(Shutdown::Read);
                }
            }
            Handoff::PassFd => {
                self.listeners.clear();
                for slot in &mut self.slots {
                    slot.chan = None;
                }
            }
        }
        let deadline = Instant::now() + GRACE_PERIOD;
        loop {
            let live: Vec<usize> = (0..self.slots.len())
                .filter(|&i| self.slots[i].running.is_some())
                .collect();
            if live.is_empty() {
                log(self.config, format_args!("shutdown: all workers done"));
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log(
                    self.config,
                    format_args!(
                        "shutdown: {} workers still serving, killing them",
                        live.len()
                    ),
                );
                for i in live {
                    if let Some((pid, _)) = self.slots[i].running.take() {
                        let _ = kill(pid, Signal::SIGKILL);
                        let _ = waitpid(pid, None);
                    }
                }
                return;
            }
            let mut fds: Vec<PollFd> = live
                .iter()
                .filter_map(|&i| self.slots[i].running.as_ref())
                .map(|(_, pidfd)| PollFd::new(pidfd.as_fd(), PollFlags::POLLIN))
                .collect();
            let ms = left.as_millis().min(60_000) as i32 + 1;
            let _ = poll(
                &mut fds,
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::NONE),
            );
            let ended: Vec<usize> = live
                .iter()
                .zip(&fds)
                .filter(|(_, fd)| fd.revents().is_some_and(|r| !r.is_empty()))
                .map(|(&i, _)| i)
                .collect();
            drop(fds);
            for i in ended {
                if let Some((pid, _)) = self.slots[i].running.take() {
                    let _ = waitpid(pid, None);
                }
            }
        }
    }
    // ANCHOR_END: drain
}
