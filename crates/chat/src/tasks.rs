//! `--impl async`: tokio tasks that share nothing but channels. One hub
//! task owns the [`Hub`]; each connection has a reader task that sends it
//! what the client typed, and a writer task that drains the member's
//! bounded queue into the socket.
//!
//! Syscalls: tokio's reactor, so `epoll_wait(2)` when every task waits and
//! non-blocking `accept4(2)`, `read(2)`, `write(2)` answering `EAGAIN`;
//! `eventfd(2)` wake-ups between the worker threads; no lock is taken by
//! this code (the channels have their own, inside tokio).
//!
//! Where it serialises: the hub task handles one event at a time from one
//! channel, so a room's order is the order in which events reach that
//! channel; each member's queue is FIFO, and its writer is its only
//! reader. The hub waits for a member only when its queue is full, and
//! then for at most `SLOW_GRACE` before dropping it, so a member whose
//! socket is full stalls it once, briefly (that wait is a blocking one,
//! in `block_in_place`, which is why the runtime is the multi-thread one;
//! see `TaskOutbox::offer`). Readers await the hub's channel, which is
//! bounded too (`HUB_QUEUE`), so a flood of commands waits in the
//! kernel's socket buffers rather than in the server's memory, and the
//! channel serves its waiting senders in turn.
//!
//! Not taken: an actor per room, which would let rooms run in parallel,
//! but `NICK`, `ROOMS` and a member in several rooms would then need a
//! registry actor and messages between actors, where one hub task keeps
//! every rule in [`Hub`], shared word for word with `--impl threads`.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use echo_protocol::{ACCEPT_BACKOFF, Config};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc::{
    self,
    error::{SendTimeoutError, TrySendError},
};
use tokio::sync::{Notify, mpsc::Receiver};
use tokio::task::JoinSet;

use crate::hub::{Hub, MemberId, Outbox};
use crate::protocol::{self, Input, Line, MAX_LINE, OUTBOX_CAP, SLOW_GRACE};
use crate::{CLOSE_GRACE, LINGER};

/// Events waiting for the hub task; a reader that finds it full waits.
const HUB_QUEUE: usize = 1024;

/// What the hub task receives.
enum Event {
    Connect(MemberId, TaskOutbox),
    /// A raw line, classified by the hub (the reader only checks length).
    Line(MemberId, Vec<u8>),
    Gone(MemberId),
    Shutdown,
}

/// How the hub tells a connection's reader to stop, and whether to cut.
#[derive(Default)]
struct Control {
    stop: Notify,
    cut: AtomicBool,
}

struct TaskOutbox {
    tx: mpsc::Sender<Line>,
    control: Arc<Control>,
}

impl Outbox for TaskOutbox {
    fn offer(&self, line: &Line) -> bool {
        match self.tx.try_send(Line::clone(line)) {
            Ok(()) | Err(TrySendError::Closed(_)) => true,
            // The hub's rules are synchronous code, so the wait of up to
            // SLOW_GRACE for room is a blocking one: `block_in_place` hands
            // this worker's other tasks to another worker first (the
            // member's writer among them), which is why the runtime is the
            // multi-thread one. The hub stalls meanwhile, as the lock
            // holder does in `--impl threads`.
            Err(TrySendError::Full(line)) => tokio::task::block_in_place(|| {
                let handle = tokio::runtime::Handle::current();
                !matches!(
                    handle.block_on(self.tx.send_timeout(line, SLOW_GRACE)),
                    Err(SendTimeoutError::Timeout(_))
                )
            }),
        }
    }

    fn cut(&self) {
        self.control.cut.store(true, Ordering::SeqCst);
        // `notify_one` keeps a permit if the reader is not waiting yet.
        self.control.stop.notify_one();
    }

    fn stop_reading(&self) {
        self.control.stop.notify_one();
    }
}

/// Serves on a multi-thread runtime until shutdown is requested; then
/// tells every member and waits up to [`CLOSE_GRACE`] for the connections.
pub fn serve(listener: TcpListener, config: &Config) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("chat-worker")
        .enable_io()
        .enable_time()
        .build()?;
    runtime.block_on(accept_loop(listener, config))
}

async fn accept_loop(listener: TcpListener, config: &Config) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let (hub_tx, hub_rx) = mpsc::channel(HUB_QUEUE);
    let hub = tokio::spawn(hub_task(hub_rx));
    let mut conns = JoinSet::new();
    let mut next_id: MemberId = 0;
    loop {
        // The contract wakes this `accept` with a connection of its own
        // when a signal arrives; the flag says so.
        let accepted = listener.accept().await;
        if config.shutdown.requested() {
            break;
        }
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                config.log(format_args!("accept: {e}"));
                if echo_protocol::accept_error_is_shortage(&e) {
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
                continue;
            }
        };
        while conns.try_join_next().is_some() {}
        if conns.len() >= config.max_conns {
            let _ = stream.try_write(protocol::err("server full").as_bytes());
            continue;
        }
        next_id += 1;
        conns.spawn(connection(stream, next_id, hub_tx.clone()));
    }
    let _ = hub_tx.send(Event::Shutdown).await;
    drop(hub_tx);
    let all_closed = async { while conns.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(CLOSE_GRACE, all_closed).await;
    hub.abort();
    Ok(())
}

// ANCHOR: hub-task
/// The one owner of the chat state: applies events in arrival order.
async fn hub_task(mut events: Receiver<Event>) {
    let mut hub = Hub::new();
    while let Some(event) = events.recv().await {
        match event {
            Event::Connect(id, outbox) => hub.connect(id, outbox),
            Event::Line(id, raw) => {
                hub.input(id, protocol::classify(&raw));
            }
            Event::Gone(id) => hub.disconnect(id),
            Event::Shutdown => hub.close_all(),
        }
    }
}
// ANCHOR_END: hub-task

// ANCHOR: tasks-connection
/// One connection: starts its writer, then forwards lines to the hub until
/// EOF, an overlong line, or the hub says stop.
async fn connection(stream: TcpStream, id: MemberId, hub: mpsc::Sender<Event>) {
    let _ = stream.set_nodelay(true);
    let (read_half, write_half) = stream.into_split();
    let (tx, rx) = mpsc::channel(OUTBOX_CAP);
    let control = Arc::new(Control::default());
    let mut writer = tokio::spawn(write_lines(write_half, rx));
    let outbox = TaskOutbox {
        tx,
        control: Arc::clone(&control),
    };
    if hub.send(Event::Connect(id, outbox)).await.is_err() {
        writer.abort();
        return;
    }

    let mut reader = BufReader::new(read_half);
    loop {
        let mut raw = Vec::with_capacity(128);
        let mut line = (&mut reader).take(MAX_LINE as u64 + 1);
        let read = tokio::select! {
            _ = control.stop.notified() => break,
            // Bounded as in the threads version; `read_until` keeps what
            // it read in `raw` if the other branch wins, and then the
            // connection is over anyway.
            read = line.read_until(b'\n', &mut raw) => read,
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let too_long = protocol::classify(&raw) == Input::TooLong;
        if hub.send(Event::Line(id, raw)).await.is_err() || too_long {
            break;
        }
    }
    let _ = hub.send(Event::Gone(id)).await;

    // Once the hub has dropped the queue's sender the writer ends after
    // the last queued line; a dropped member's is aborted at once.
    if control.cut.load(Ordering::SeqCst)
        || tokio::time::timeout(LINGER, &mut writer).await.is_err()
    {
        writer.abort();
    }
}
// ANCHOR_END: tasks-connection

/// A member's writer: the queue to the socket, a batch per `write`, until
/// the sender is gone (then a half-close) or the socket fails.
async fn write_lines(mut out: OwnedWriteHalf, mut rx: Receiver<Line>) {
    let mut batch = Vec::with_capacity(4096);
    while let Some(line) = rx.recv().await {
        batch.clear();
        batch.extend_from_slice(line.as_bytes());
        while batch.len() < 64 * 1024 {
            match rx.try_recv() {
                Ok(line) => batch.extend_from_slice(line.as_bytes()),
                Err(_) => break,
            }
        }
        if out.write_all(&batch).await.is_err() {
            return;
        }
    }
    let _ = out.shutdown().await;
}
