//! Step 4, the server: the echo written as `async fn`s on the runtime of
//! the three steps before. It reads like the blocking echo (read, write it
//! all back, read again) and runs like the epoll loop: one thread, every
//! wait a `Pending` that goes back to `epoll_wait`. In seed 003 this is
//! the last step, `async def` and `await` in place of generators and
//! `yield from`; Rust's compiler writes the state machine (the seed's
//! generator frame) that echo-epoll writes by hand.
//!
//! # Syscalls
//!
//! Those of the steps below (`epoll_wait`, `accept4`, `read`, `write`),
//! plus `shutdown(SHUT_WR)` when a client has half-closed and has its echo.
//!
//! # Trade-offs
//!
//! A connection writes everything it read before it reads again, so its
//! unsent output never exceeds one read ([`READ_CHUNK`]), well under
//! [`OUTPUT_CAP`](crate::OUTPUT_CAP): back-pressure is the `.await` on the write, which keeps
//! the task from reading while the client does not read. The price is that
//! reading and writing one socket never overlap; the epoll loop reads on
//! while output is under the cap, which can keep both directions busy.
//! No task is preempted, so a connection that always has bytes waiting
//! yields by itself after [`READS_PER_TURN`] reads (tokio does the same
//! with a per-task budget hidden in its I/O futures; here it is in plain
//! sight).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io::{self, ErrorKind};
use std::net::{Shutdown as HalfClose, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::rc::Rc;
use std::task::Poll;

use echo_protocol::nonblocking::{Accepted, Echo, READ_CHUNK, Spare, admit};
use echo_protocol::{ACCEPT_BACKOFF, Config, NoFlags, Shutdown};

use crate::executor::{Executor, Spawn, yield_now};
use crate::net::{Async, sleep};
use crate::reactor::{Direction, Reactor};

/// Most reads one connection makes before letting the other tasks run:
/// 16 × [`READ_CHUNK`] = 1 MiB for a client that sends without pause.
pub const READS_PER_TURN: usize = 16;

/// Most connections accepted before the accept task yields, so that a
/// flood of new clients cannot delay the ones already connected.
const ACCEPT_BATCH: usize = 64;

/// What the connection tasks share: the configuration, the scratch buffer
/// every read goes through, and the count of open connections.
struct Shared {
    config: Config,
    scratch: RefCell<Vec<u8>>,
    open: Cell<usize>,
}

/// The shutdown eventfd as something the reactor can register.
struct ShutdownFd(Shutdown);

impl AsFd for ShutdownFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.fd()
    }
}

/// Serves every client until shutdown is requested and the open
/// connections have finished.
pub fn serve(listener: TcpListener, config: &Config, _flags: NoFlags) -> io::Result<()> {
    let reactor = Rc::new(Reactor::new()?);
    let executor = Rc::new(Executor::new(Rc::clone(&reactor)));
    start(executor.clone(), &reactor, listener, config)?;
    executor.run()?;
    config.log(format_args!("shutdown: all connections closed"));
    Ok(())
}

/// Spawns the accept task (which spawns a task per client) on `executor`,
/// its I/O registered with `reactor`; running them is the caller's. Apart
/// from [`serve`] so that another executor can run the same server (the
/// `async-requeue-waker` exercise does).
pub fn start(
    executor: Rc<dyn Spawn>,
    reactor: &Rc<Reactor>,
    listener: TcpListener,
    config: &Config,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = Async::new(listener, reactor)?;
    let shutdown = Async::new(ShutdownFd(config.shutdown.clone()), reactor)?;
    let spare = Spare::new()?;
    let shared = Rc::new(Shared {
        config: config.clone(),
        scratch: RefCell::new(vec![0; READ_CHUNK]),
        open: Cell::new(0),
    });
    let accept = accept_loop(
        Rc::clone(&executor),
        Rc::clone(reactor),
        listener,
        shutdown,
        spare,
        shared,
    );
    executor.spawn_task(Box::pin(accept));
    Ok(())
}

// ANCHOR: accept-loop
/// Accepts clients and spawns a task for each, until shutdown is
/// requested; then drops the listener, and the executor runs until the
/// last connection task has finished.
async fn accept_loop(
    executor: Rc<dyn Spawn>,
    reactor: Rc<Reactor>,
    listener: Async<TcpListener>,
    shutdown: Async<ShutdownFd>,
    mut spare: Spare,
    shared: Rc<Shared>,
) {
    let config = &shared.config;
    let mut accepted = 0;
    loop {
        // Two futures at once, written by hand (the `select!` of async
        // crates): shutdown first, so that a flood of clients cannot hide it.
        // "Trying" the eventfd is reading the flag: no syscall.
        let next = poll_fn(|cx| {
            let stop = shutdown.poll_io(Direction::Read, cx, |s| {
                if s.0.requested() {
                    Ok(())
                } else {
                    Err(ErrorKind::WouldBlock.into())
                }
            });
            if stop.is_ready() {
                return Poll::Ready(None);
            }
            listener.poll_accept(cx, &mut spare).map(Some)
        })
        .await;
        match next {
            None => break,
            Some(Accepted::Client(stream, peer)) => {
                if let Some(stream) = admit(stream, peer, shared.open.get(), config) {
                    match Async::new(stream, &reactor) {
                        Ok(stream) => {
                            shared.open.set(shared.open.get() + 1);
                            let task = connection(stream, peer, Rc::clone(&shared));
                            executor.spawn_task(Box::pin(task));
                        }
                        Err(e) => config.log(format_args!("{peer}: cannot register: {e}")),
                    }
                }
            }
            Some(Accepted::Skipped(e)) => config.log(format_args!("accept: {e}")),
            // Out of something no connection of ours can free at once:
            // serve the others and retry after a pause.
            Some(Accepted::Later(e)) => {
                config.log(format_args!("accept: {e}"));
                sleep(&reactor, ACCEPT_BACKOFF).await;
            }
            Some(Accepted::Empty) => {}
        }
        accepted += 1;
        if accepted == ACCEPT_BATCH {
            accepted = 0;
            yield_now().await;
        }
    }
    config.log(format_args!(
        "shutdown requested: no longer accepting, {} connections open",
        shared.open.get()
    ));
}
// ANCHOR_END: accept-loop

/// One client's task: the echo, then the log line and the count.
async fn connection(stream: Async<TcpStream>, peer: SocketAddr, shared: Rc<Shared>) {
    let result = echo(&stream, &shared.scratch).await;
    shared.open.set(shared.open.get() - 1);
    match result {
        Ok(echoed) => shared
            .config
            .log(format_args!("{peer}: closed after {echoed} bytes")),
        Err(e) => shared.config.log(format_args!("{peer}: {e}")),
    }
}

// ANCHOR: echo
/// The echo of one connection, until the client half-closes and has
/// everything back: returns the bytes echoed. An error (a reset) ends it.
async fn echo(stream: &Async<TcpStream>, scratch: &RefCell<Vec<u8>>) -> io::Result<u64> {
    let mut echo = Echo::new();
    let mut reads = 0;
    loop {
        stream.write_all(&mut echo).await?;
        if echo.done() {
            stream.get_ref().shutdown(HalfClose::Write)?;
            return Ok(echo.echoed());
        }
        if reads == READS_PER_TURN {
            reads = 0;
            yield_now().await;
        }
        stream.read_into(&mut echo, scratch).await?;
        reads += 1;
    }
}
// ANCHOR_END: echo
