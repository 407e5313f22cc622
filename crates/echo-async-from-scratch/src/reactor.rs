//! Step 1, the reactor: epoll turns "this descriptor is ready" into "wake
//! the task that waits for it". In seed 003's Python this is the
//! `selector.register(fd, EVENT_READ, on_readable)` and `loop()` part; the
//! callback it stored becomes a [`Waker`] here, and the reactor never runs
//! the server's logic, it only says who may run again.
//!
//! # Syscalls
//!
//! `epoll_create1(2)` once; `epoll_ctl(EPOLL_CTL_ADD)` once per descriptor
//! for its whole life; `epoll_wait(2)` to sleep until something is ready or
//! the next timer is due. No `EPOLL_CTL_MOD`, no `EPOLL_CTL_DEL`: closing a
//! socket's last descriptor removes it from the epoll set.
//!
//! # Trade-offs
//!
//! Every descriptor is registered once, edge-triggered, for both
//! directions (`EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET`). Edge-triggered suits
//! futures because a future already follows the edge-triggered rule: it
//! tries the syscall first and returns `Pending` only after `EAGAIN`, so
//! "drain until `EAGAIN`, then wait for the next edge" is not a discipline
//! to remember but the shape of every `poll`. It is the cheapest too: a
//! level-triggered registration would have to change its interest each
//! time a task starts or stops waiting (an `EPOLL_CTL_MOD` each), or be
//! told "writable" on every wait for every socket, since a socket is
//! writable nearly all the time; edge-triggered, the interest never
//! changes and an idle direction reports nothing.
//!
//! The price of edges: one that arrives while no task waits must not be
//! lost. Each registration therefore keeps a readiness bit per direction:
//! an edge sets it (and wakes the waiting task, if any); a future clears it
//! when the syscall says the socket is drained (`EAGAIN`, or a read shorter
//! than the buffer: Linux queues a new edge for every arrival after it).
//! A future that finds the bit clear returns `Pending` without a syscall
//! that would only say `EAGAIN`. One exception makes that safe: a read
//! shorter than the buffer may have left the client's FIN behind it, and
//! no new edge will come for a FIN that is already there; so descriptors
//! are registered with `EPOLLRDHUP` too, and once the reactor has seen it
//! (or `EPOLLHUP`, `EPOLLERR`) the bit stays set for good. This is what tokio's `ScheduledIo` keeps;
//! the alternative, no bits and a syscall before every wait, is simpler
//! but costs an extra `read` per message.
//!
//! One reactor, on the executor's thread: `Rc` and `RefCell`, no locks.

use std::cell::RefCell;
use std::io;
use std::os::fd::BorrowedFd;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use crate::slab::Slab;

/// Events fetched per `epoll_wait`; more ready descriptors wait for the next
/// call, nothing is lost (edges stay queued in the kernel).
const MAX_EVENTS: usize = 1024;

/// Which way a task waits on a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Readable: bytes, an EOF, a connection to accept, an eventfd count.
    Read,
    /// Writable: room in the socket's send buffer.
    Write,
}

/// One direction of one registration: the seed's "future with one
/// callback", as a readiness bit and the waker of the task waiting.
#[derive(Debug)]
struct Slot {
    /// An edge came since a future last saw `EAGAIN`. Starts set, so that
    /// the first operation is tried rather than waited for.
    ready: bool,
    /// The peer shut this direction (`EPOLLRDHUP`) or the socket broke
    /// (`EPOLLHUP`, `EPOLLERR`): nothing will clear `ready` any more, since
    /// no edge would announce what the next syscall has to say.
    closed: bool,
    /// The task to wake on the next edge, if one waits.
    waker: Option<Waker>,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            ready: true,
            closed: false,
            waker: None,
        }
    }
}

/// What the reactor keeps per registered descriptor.
#[derive(Debug)]
struct Registration {
    read: Slot,
    write: Slot,
}

impl Registration {
    fn slot(&mut self, direction: Direction) -> &mut Slot {
        match direction {
            Direction::Read => &mut self.read,
            Direction::Write => &mut self.write,
        }
    }
}

/// The epoll instance, the registrations and the timers.
#[derive(Debug)]
pub struct Reactor {
    epoll: Epoll,
    registrations: RefCell<Slab<Registration>>,
    /// Sleeping tasks and when to wake them. A list, not a heap or a
    /// wheel: the only timer in this server is the accept back-off, rare
    /// and alone.
    timers: RefCell<Vec<(Instant, Waker)>>,
    events: RefCell<Vec<EpollEvent>>,
}

/// A registered descriptor's key in the reactor: its slab index, also the
/// `u64` its epoll events carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token(usize);

impl Reactor {
    /// A reactor with its epoll instance.
    pub fn new() -> io::Result<Reactor> {
        Ok(Reactor {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            registrations: RefCell::new(Slab::new()),
            timers: RefCell::new(Vec::new()),
            events: RefCell::new(vec![EpollEvent::empty(); MAX_EVENTS]),
        })
    }

    /// Registers `fd` for both directions, edge-triggered, once for its
    /// whole life. Bytes already waiting are not lost: `EPOLL_CTL_ADD`
    /// looks at the current state, and the readiness bits start set anyway.
    pub fn register(&self, fd: BorrowedFd<'_>) -> io::Result<Token> {
        let mut registrations = self.registrations.borrow_mut();
        let key = registrations.insert(Registration {
            read: Slot::new(),
            write: Slot::new(),
        });
        let interest = EpollFlags::EPOLLIN
            | EpollFlags::EPOLLOUT
            | EpollFlags::EPOLLRDHUP
            | EpollFlags::EPOLLET;
        if let Err(e) = self.epoll.add(fd, EpollEvent::new(interest, key as u64)) {
            registrations.remove(key);
            return Err(e.into());
        }
        Ok(Token(key))
    }

    /// Forgets a registration. The caller closes the descriptor right after
    /// (which takes it out of the epoll set), or keeps it out of any other
    /// use until the reactor is dropped.
    pub fn deregister(&self, token: Token) {
        self.registrations.borrow_mut().remove(token.0);
    }

    /// Whether `direction` may be tried now. If not, the task in `cx` is
    /// recorded to be woken by the next edge: `Poll::Pending`.
    pub fn poll_ready(&self, token: Token, direction: Direction, cx: &mut Context<'_>) -> Poll<()> {
        let mut registrations = self.registrations.borrow_mut();
        let Some(reg) = registrations.get_mut(token.0) else {
            // Deregistered: nothing will ever wake us, so say ready and let
            // the syscall report what is wrong.
            return Poll::Ready(());
        };
        let slot = reg.slot(direction);
        if slot.ready {
            return Poll::Ready(());
        }
        remember(&mut slot.waker, cx);
        Poll::Pending
    }

    /// The syscall said `EAGAIN`, or drained the socket: wait for the next
    /// edge before trying again.
    pub fn clear_ready(&self, token: Token, direction: Direction) {
        if let Some(reg) = self.registrations.borrow_mut().get_mut(token.0) {
            let slot = reg.slot(direction);
            slot.ready = slot.closed;
        }
    }

    /// Wakes the task in `cx` at `deadline` (or on the first turn after it).
    pub fn wake_at(&self, deadline: Instant, cx: &mut Context<'_>) {
        self.timers
            .borrow_mut()
            .push((deadline, cx.waker().clone()));
    }

    // ANCHOR: turn
    /// One turn: waits for events (not at all when `block` is false: the
    /// executor still has tasks to run), sets the readiness bits and wakes
    /// the waiting tasks, then wakes the timers that are due. This is the
    /// seed's `loop()` body, except that it calls no callback: waking only
    /// puts a task back on the executor's run queue.
    pub fn turn(&self, block: bool) -> io::Result<()> {
        let timeout = if block {
            self.next_timeout()
        } else {
            EpollTimeout::ZERO
        };
        let mut events = self.events.borrow_mut();
        let ready = match self.epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(e) => return Err(e.into()),
        };
        let mut woken = Vec::new();
        {
            let mut registrations = self.registrations.borrow_mut();
            for event in &events[..ready] {
                // Absent if deregistered since the kernel queued the event.
                let Some(reg) = registrations.get_mut(event.data() as usize) else {
                    continue;
                };
                let flags = event.events();
                // An error or a hang-up is news for both directions: the
                // next syscall will report it, whichever way a task waits.
                let broken = flags.intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP);
                if broken || flags.contains(EpollFlags::EPOLLRDHUP) {
                    reg.read.closed = true;
                }
                if broken {
                    reg.write.closed = true;
                }
                if broken || flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP) {
                    reg.read.ready = true;
                    woken.extend(reg.read.waker.take());
                }
                if broken || flags.contains(EpollFlags::EPOLLOUT) {
                    reg.write.ready = true;
                    woken.extend(reg.write.waker.take());
                }
            }
        }
        drop(events);
        let now = Instant::now();
        self.timers.borrow_mut().retain(|(deadline, waker)| {
            let due = *deadline <= now;
            if due {
                woken.push(waker.clone());
            }
            !due
        });
        // Woken outside the borrows: waking is the executor's business and
        // must not find the reactor's tables locked.
        for waker in woken {
            waker.wake();
        }
        Ok(())
    }
    // ANCHOR_END: turn

    /// Until the earliest timer, rounded up to whole milliseconds (waking
    /// early would only find the timer not yet due), or for ever.
    fn next_timeout(&self) -> EpollTimeout {
        let Some(deadline) = self.timers.borrow().iter().map(|(d, _)| *d).min() else {
            return EpollTimeout::NONE;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        EpollTimeout::try_from(left + Duration::from_millis(1)).unwrap_or(EpollTimeout::MAX)
    }
}

/// Stores the waker of the task in `cx`, cloning only if it is not the one
/// already stored: a task re-polled while it waits keeps the same waker,
/// and a clone is an atomic increment.
fn remember(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}
