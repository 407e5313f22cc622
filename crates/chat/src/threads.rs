//! `--impl threads`: a reader thread per connection, a writer thread per
//! member, and the [`Hub`] shared by all of them under one
//! `parking_lot::Mutex`.
//!
//! Syscalls: `accept(2)` on a blocking listener; per connection
//! `clone(2)` twice (reader, writer), blocking `read(2)` and `write(2)`,
//! `shutdown(2)` to wake a blocked reader or writer from another thread;
//! `futex(2)` under the lock and the channels.
//!
//! Where it serialises: every command of every client takes the hub lock,
//! and a broadcast offers its line to each member's queue while holding
//! it. That is what makes a room's order total: two `SAY`s to one room
//! are queued to every member in the order their threads got the lock,
//! and each queue is FIFO. The lock is never held across a socket call,
//! only across a queue's `send_timeout`, which waits only when that queue
//! is full and then at most `SLOW_GRACE` before its member is dropped, so
//! one member's full socket stalls the room once, briefly. The writes
//! happen outside it, in parallel, one writer per member.
//!
//! Not taken: a lock per room. It would let two rooms broadcast at once,
//! but a member in several rooms, `NICK` (unique across rooms) and
//! `ROOMS` all need more than one room, hence a lock order or a registry
//! lock on top; with the hub held only for in-memory work, one lock is
//! not where the time goes. Nor a write to each socket under the lock
//! (the exercise `chat-slow-member` starts from that): one member that
//! stops reading then holds the lock forever.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crossbeam::channel::{self, Receiver, RecvTimeoutError, SendTimeoutError, Sender};
use echo_protocol::{ACCEPT_BACKOFF, Config};
use parking_lot::{Condvar, Mutex};

use crate::hub::{Hub, MemberId, Outbox};
use crate::protocol::{self, Line, MAX_LINE, OUTBOX_CAP, SLOW_GRACE};
use crate::{CLOSE_GRACE, LINGER};

/// A member's end of its writer's queue, and the socket, to cut it.
struct ThreadOutbox {
    tx: Sender<Line>,
    stream: Arc<TcpStream>,
}

impl Outbox for ThreadOutbox {
    fn offer(&self, line: &Line) -> bool {
        // Under the hub lock: a full queue stalls every room for at most
        // SLOW_GRACE, once, before its member is dropped.
        !matches!(
            self.tx.send_timeout(Line::clone(line), SLOW_GRACE),
            Err(SendTimeoutError::Timeout(_))
        )
    }

    fn cut(&self) {
        // Wakes the reader (`read` returns 0) and a writer blocked in
        // `write` (`EPIPE`): inet_shutdown wakes every waiter on the socket.
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn stop_reading(&self) {
        let _ = self.stream.shutdown(Shutdown::Read);
    }
}

/// What every connection thread shares.
struct Shared {
    hub: Mutex<Hub<ThreadOutbox>>,
    /// Connections whose threads have not finished, for `--max-conns` and
    /// for the bounded wait at shutdown.
    live: Mutex<usize>,
    gone: Condvar,
}

/// Serves until shutdown is requested; then tells every member, stops
/// their readers, and waits up to [`CLOSE_GRACE`] for the writers.
pub fn serve(listener: TcpListener, config: &Config) -> io::Result<()> {
    let shared = Arc::new(Shared {
        hub: Mutex::new(Hub::new()),
        live: Mutex::new(0),
        gone: Condvar::new(),
    });
    let mut next_id: MemberId = 0;
    for conn in listener.incoming() {
        if config.shutdown.requested() {
            break;
        }
        let mut stream = match conn {
            Ok(s) => s,
            Err(e) => {
                config.log(format_args!("accept: {e}"));
                if echo_protocol::accept_error_is_shortage(&e) {
                    thread::sleep(ACCEPT_BACKOFF);
                }
                continue;
            }
        };
        {
            let mut live = shared.live.lock();
            if *live >= config.max_conns {
                let _ = stream.write_all(protocol::err("server full").as_bytes());
                continue;
            }
            *live += 1;
        }
        next_id += 1;
        let id = next_id;
        let thread_shared = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name(format!("chat-{id}"))
            .spawn(move || {
                connection(stream, id, &thread_shared);
                *thread_shared.live.lock() -= 1;
                thread_shared.gone.notify_all();
            });
        if let Err(e) = spawned {
            config.log(format_args!("cannot spawn a connection thread: {e}"));
            *shared.live.lock() -= 1;
        }
    }
    shared.hub.lock().close_all();
    let deadline = Instant::now() + CLOSE_GRACE;
    let mut live = shared.live.lock();
    while *live > 0 {
        if shared.gone.wait_until(&mut live, deadline).timed_out() {
            break;
        }
    }
    Ok(())
}

// ANCHOR: threads-connection
/// One connection, on its own thread: starts its writer, then reads lines
/// and applies each to the hub under the lock.
fn connection(stream: TcpStream, id: MemberId, shared: &Shared) {
    let _ = stream.set_nodelay(true);
    let stream = Arc::new(stream);
    let (tx, rx) = channel::bounded(OUTBOX_CAP);
    // The writer holds `finished` until it returns: the reader waits on it
    // with a deadline, where a `JoinHandle` offers no timed join.
    let (finished, writer_done) = channel::bounded::<()>(0);
    let writer_stream = Arc::clone(&stream);
    let writer = thread::Builder::new()
        .name(format!("chat-{id}-w"))
        .spawn(move || write_lines(&writer_stream, &rx, finished));
    let writer = match writer {
        Ok(handle) => handle,
        Err(_) => return,
    };
    shared.hub.lock().connect(
        id,
        ThreadOutbox {
            tx,
            stream: Arc::clone(&stream),
        },
    );

    let mut reader = BufReader::new(&*stream);
    let mut raw = Vec::with_capacity(128);
    loop {
        raw.clear();
        // `take` bounds what one line may cost: an endless line stops at
        // MAX_LINE + 1 bytes, which `classify` calls too long.
        match (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut raw)
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if !shared.hub.lock().input(id, protocol::classify(&raw)) {
            break;
        }
    }
    shared.hub.lock().disconnect(id);

    // The hub no longer holds the queue's sender, so the writer ends once
    // the queue is written. A client that does not read for LINGER loses
    // the rest: no thread waits forever on a socket.
    if let Err(RecvTimeoutError::Timeout) = writer_done.recv_timeout(LINGER) {
        let _ = stream.shutdown(Shutdown::Both);
    }
    let _ = writer.join();
}
// ANCHOR_END: threads-connection

// ANCHOR: threads-writer
/// A member's writer: writes its queue to the socket, batching what is
/// already queued into one `write`, until the queue's sender is gone or
/// the socket fails; then half-closes, so that the client sees EOF.
fn write_lines(stream: &TcpStream, rx: &Receiver<Line>, _finished: Sender<()>) {
    let mut out = BufWriter::new(stream);
    while let Ok(line) = rx.recv() {
        let mut batch = Some(line);
        while let Some(line) = batch {
            if out.write_all(line.as_bytes()).is_err() {
                return;
            }
            batch = rx.try_recv().ok();
        }
        if out.flush().is_err() {
            return;
        }
    }
    let _ = out.flush();
    let _ = stream.shutdown(Shutdown::Write);
}
// ANCHOR_END: threads-writer
