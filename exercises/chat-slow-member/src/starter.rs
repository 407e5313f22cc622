//! TASK: keep the room going when one member stops reading.
//!
//! This is the chat of `crates/chat` (`--impl threads`) as a first version
//! is often written: the hub (rooms, members, the rules) sits under one
//! lock, and a broadcast writes the line to each member's socket right
//! there, under the lock. It works while everybody reads. When one member
//! stops reading, its socket buffers fill, `write` blocks, the lock is
//! never released, and every command of every member waits behind it.
//!
//! Change [`Member`], and nothing else: give each member a bounded queue
//! (`crossbeam::channel::bounded(OUTBOX_CAP)`) and a writer thread that
//! drains it into the socket, so that `offer` only queues. When the queue
//! stays full for `SLOW_GRACE`, `offer` returns `false`: the hub then
//! drops the member, tells its rooms `EVENT <room> <nick> dropped (not
//! reading)`, and calls `cut`. (Both constants are in `chat::protocol`.)
//!
//! Edit this file only. Grade with `just exercise chat-slow-member` (or
//! `bash scripts/exercise.sh chat-slow-member`).
//!
//! Syscalls: `accept(2)`, blocking `read(2)` and `write(2)`, `shutdown(2)`;
//! `futex(2)` under the lock (and, once solved, the queue).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;

use chat::hub::{Hub, MemberId, Outbox};
use chat::protocol::{self, Line, MAX_LINE};
use echo_protocol::{Config, NoFlags};
use parking_lot::Mutex;

/// How the hub's lines reach one member's socket.
pub struct Member {
    stream: Arc<TcpStream>,
}

impl Member {
    /// Called once per connection, before the hub knows the member.
    pub fn start(stream: Arc<TcpStream>) -> Member {
        Member { stream }
    }
}

impl Outbox for Member {
    fn offer(&self, line: &Line) -> bool {
        // Straight to the socket, while the caller holds the hub lock.
        let _ = (&*self.stream).write_all(line.as_bytes());
        true
    }

    fn cut(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn stop_reading(&self) {
        let _ = self.stream.shutdown(Shutdown::Read);
    }
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
