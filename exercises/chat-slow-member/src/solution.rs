//! Solution of `chat-slow-member`: a bounded queue and a writer thread
//! per member, so that the hub only ever queues, and waits at most
//! `SLOW_GRACE` for a member whose queue is full before dropping it.
//!
//! `crates/chat`'s threads version does the same, and also bounds how long
//! a closing member's writer may take to flush (`chat::LINGER`); here a
//! client that quits and never reads keeps its writer thread until it
//! closes.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;

use chat::hub::{Hub, MemberId, Outbox};
use chat::protocol::{self, Line, MAX_LINE, OUTBOX_CAP, SLOW_GRACE};
use crossbeam::channel::{self, Receiver, SendTimeoutError, Sender};
use echo_protocol::{Config, NoFlags};
use parking_lot::Mutex;

/// How the hub's lines reach one member's socket: a bounded queue, drained
/// by the member's own writer thread.
pub struct Member {
    tx: Sender<Line>,
    stream: Arc<TcpStream>,
}

impl Member {
    /// Called once per connection, before the hub knows the member: starts
    /// its writer.
    pub fn start(stream: Arc<TcpStream>) -> Member {
        let (tx, rx) = channel::bounded(OUTBOX_CAP);
        let writer_stream = Arc::clone(&stream);
        thread::spawn(move || write_lines(&writer_stream, &rx));
        Member { tx, stream }
    }
}

impl Outbox for Member {
    fn offer(&self, line: &Line) -> bool {
        // The only wait under the lock, and a bounded one. A closed queue
        // (the writer met a dead socket) takes the line: the reader will
        // report the departure.
        !matches!(
            self.tx.send_timeout(Line::clone(line), SLOW_GRACE),
            Err(SendTimeoutError::Timeout(_))
        )
    }

    fn cut(&self) {
        // Wakes the writer blocked in `write` (EPIPE) and the reader.
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn stop_reading(&self) {
        let _ = self.stream.shutdown(Shutdown::Read);
    }
}

/// The writer: queue to socket until the hub drops the sender (then a
/// half-close, so the client sees EOF after the last line) or the socket
/// fails.
fn write_lines(stream: &TcpStream, rx: &Receiver<Line>) {
    let mut out = BufWriter::new(stream);
    while let Ok(line) = rx.recv() {
        let mut next = Some(line);
        while let Some(line) = next {
            if out.write_all(line.as_bytes()).is_err() {
                return;
            }
            next = rx.try_recv().ok();
        }
        if out.flush().is_err() {
            return;
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
}

/// Accepts clients, each read on its own thread, all sharing one hub.
pub fn serve(listener: TcpListener, config: &Config, _flags: NoFlags) -> io::Result<()> {
    let hub = Arc::new(Mutex::new(Hub::new()));
    let mut next_id: MemberId = 0;
    for conn in listener.incoming() {
        if config.shutdown.requested() {
            break;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                config.log(format_args!("accept: {e}"));
                continue;
            }
        };
        next_id += 1;
        let id = next_id;
        let hub = Arc::clone(&hub);
        thread::spawn(move || connection(stream, id, &hub));
    }
    hub.lock().close_all();
    Ok(())
}

/// Reads one member's lines and applies each to the hub, under the lock.
fn connection(stream: TcpStream, id: MemberId, hub: &Mutex<Hub<Member>>) {
    let _ = stream.set_nodelay(true);
    let stream = Arc::new(stream);
    hub.lock().connect(id, Member::start(Arc::clone(&stream)));
    let mut reader = BufReader::new(&*stream);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        match (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut raw)
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if !hub.lock().input(id, protocol::classify(&raw)) {
            break;
        }
    }
    hub.lock().disconnect(id);
}
