//! What the executor runs on, ready-made: a reactor (epoll, each descriptor
//! registered once, edge-triggered, with a waker slot per direction), the
//! futures that wait on it, and the echo server as `async fn`s. A smaller
//! cousin of `echo-async-from-scratch`: no readiness bits, so every wait
//! starts with a syscall that may say `EAGAIN`.
//!
//! Syscalls: `epoll_create1(2)`, `epoll_ctl(EPOLL_CTL_ADD)`,
//! `epoll_wait(2)`, `accept4(2)`, `read(2)`, `write(2)`, `shutdown(2)`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::io::{self, ErrorKind};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use echo_protocol::nonblocking::{Accepted, Echo, READ_CHUNK, Read, Spare, accept_one, admit};
use echo_protocol::{ACCEPT_BACKOFF, Config};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// Reads from one client before its task yields.
const READS_PER_TURN: usize = 16;
/// Accepts before the accept task yields.
const ACCEPT_BATCH: usize = 64;

/// Where the server puts its tasks: the executor of `starter.rs`.
pub trait Spawn {
    /// Adds `task`, queued for its first poll.
    fn spawn_task(&self, task: Pin<Box<dyn Future<Output = ()>>>);
}

/// Epoll and, per descriptor, the wakers of the tasks reading and writing.
pub struct Reactor {
    epoll: Epoll,
    wakers: RefCell<HashMap<RawFd, [Option<Waker>; 2]>>,
}

impl Reactor {
    /// A reactor with its epoll instance.
    pub fn new() -> io::Result<Reactor> {
        Ok(Reactor {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            wakers: RefCell::new(HashMap::new()),
        })
    }

    fn register(&self, fd: impl AsFd) -> io::Result<()> {
        let raw = fd.as_fd().as_raw_fd();
        let all = EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLET;
        self.epoll.add(fd, EpollEvent::new(all, raw as u64))?;
        self.wakers.borrow_mut().insert(raw, [None, None]);
        Ok(())
    }

    /// `op` on `fd`; on `EAGAIN`, the task waits for the next edge in
    /// direction `dir` (0 read, 1 write).
    fn poll_io<R>(
        &self,
        fd: RawFd,
        dir: usize,
        cx: &mut Context<'_>,
        op: impl FnOnce() -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        match op() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if let Some(slots) = self.wakers.borrow_mut().get_mut(&fd) {
                    slots[dir] = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            other => Poll::Ready(other),
        }
    }

    /// Waits for events (not at all unless `block`), wakes their tasks.
    pub fn turn(&self, block: bool) -> io::Result<()> {
        let mut events = [EpollEvent::empty(); 256];
        let timeout = if block {
            EpollTimeout::NONE
        } else {
            EpollTimeout::ZERO
        };
        let n = match self.epoll.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(Errno::EINTR) => 0,
            Err(e) => return Err(e.into()),
        };
        let mut woken = Vec::new();
        for event in &events[..n] {
            let (flags, fd) = (event.events(), event.data() as RawFd);
            if let Some(slots) = self.wakers.borrow_mut().get_mut(&fd) {
                let broken = flags.intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP);
                if broken || flags.contains(EpollFlags::EPOLLIN) {
                    woken.extend(slots[0].take());
                }
                if broken || flags.contains(EpollFlags::EPOLLOUT) {
                    woken.extend(slots[1].take());
                }
            }
        }
        woken.into_iter().for_each(Waker::wake);
        Ok(())
    }
}

/// Returns `Pending` once, after waking its own task: the others get a
/// turn. The wake-up comes *during* the task's poll.
pub fn yield_now() -> impl Future<Output = ()> {
    let mut yielded = false;
    poll_fn(move |cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
}

/// Starts the echo server on `executor`: an accept task that spawns one
/// task per client.
pub fn start(
    executor: Rc<dyn Spawn>,
    reactor: Rc<Reactor>,
    listener: TcpListener,
    config: &Config,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    reactor.register(&listener)?;
    reactor.register(config.shutdown.fd())?;
    let config = config.clone();
    let spare = Spare::new()?;
    executor
        .clone()
        .spawn_task(Box::pin(accept(executor, reactor, listener, spare, config)));
    Ok(())
}

async fn accept(
    executor: Rc<dyn Spawn>,
    reactor: Rc<Reactor>,
    listener: TcpListener,
    mut spare: Spare,
    config: Config,
) {
    let (open, stop) = (Rc::new(Cell::new(0)), config.shutdown.fd().as_raw_fd());
    let scratch = Rc::new(RefCell::new(vec![0; READ_CHUNK]));
    for accepted in 1.. {
        let next = poll_fn(|cx| {
            let quit = reactor.poll_io(stop, 0, cx, || {
                if config.shutdown.requested() {
                    return Ok(());
                }
                Err(ErrorKind::WouldBlock.into())
            });
            if quit.is_ready() {
                return Poll::Ready(None);
            }
            reactor
                .poll_io(listener.as_raw_fd(), 0, cx, || {
                    match accept_one(&listener, &mut spare) {
                        Accepted::Empty => Err(ErrorKind::WouldBlock.into()),
                        other => Ok(other),
                    }
                })
                .map(|r| r.ok())
        })
        .await;
        match next {
            None => return,
            Some(Accepted::Client(stream, peer)) => {
                let Some(stream) = admit(stream, peer, open.get(), &config) else {
                    continue;
                };
                if let Err(e) = reactor.register(&stream) {
                    config.log(format_args!("{peer}: cannot register: {e}"));
                    continue;
                }
                open.set(open.get() + 1);
                let (reactor, open, scratch) = (reactor.clone(), open.clone(), scratch.clone());
                let config = config.clone();
                executor.spawn_task(Box::pin(async move {
                    match echo(&reactor, &stream, &scratch).await {
                        Ok(()) => config.log(format_args!("{peer}: closed")),
                        Err(e) => config.log(format_args!("{peer}: {e}")),
                    }
                    reactor.wakers.borrow_mut().remove(&stream.as_raw_fd());
                    open.set(open.get() - 1);
                }));
            }
            Some(Accepted::Later(_)) => {
                // Rare (out of descriptors with no spare): a short pause
                // without a timer, by yielding until it has passed.
                let until = std::time::Instant::now() + ACCEPT_BACKOFF;
                while std::time::Instant::now() < until {
                    yield_now().await;
                }
            }
            Some(_) => {}
        }
        if accepted % ACCEPT_BATCH == 0 {
            yield_now().await;
        }
    }
}

/// Read, write it all back, read again, until the client half-closes.
async fn echo(reactor: &Reactor, stream: &TcpStream, scratch: &RefCell<Vec<u8>>) -> io::Result<()> {
    let (fd, mut echo) = (stream.as_raw_fd(), Echo::new());
    for reads in 1.. {
        poll_fn(|cx| {
            while echo.wants_write() {
                std::task::ready!(reactor.poll_io(fd, 1, cx, || {
                    echo.flush_to(&mut &*stream)?;
                    if echo.wants_write() {
                        return Err(ErrorKind::WouldBlock.into());
                    }
                    Ok(())
                }))?;
            }
            Poll::Ready(Ok::<(), io::Error>(()))
        })
        .await?;
        if echo.done() {
            return stream.shutdown(Shutdown::Write);
        }
        if reads % READS_PER_TURN == 0 {
            yield_now().await;
        }
        poll_fn(|cx| {
            reactor.poll_io(fd, 0, cx, || {
                match echo.read_from(&mut &*stream, &mut scratch.borrow_mut())? {
                    Read::WouldBlock => Err(ErrorKind::WouldBlock.into()),
                    other => Ok(other),
                }
            })
        })
        .await?;
    }
    Ok(())
}
