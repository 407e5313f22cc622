//! TASK: find why this server hangs under load, and fix it.
//!
//! `serve` is a thread-pool echo server: `--workers N` threads take
//! accepted connections from a bounded channel of `--queue Q` slots, and a
//! table of open connections (behind a `Mutex`) enforces `--max-conns` and
//! feeds the log. With a few clients it works. Now start it with
//! `cargo run -p ex-pool-deadlock -- --workers 2 --queue 1 --verbose` and
//! open five `nc 127.0.0.1 7000` at once: the first two are echoed, as
//! they should be, and the other three wait, as they should. But when the
//! first two leave, nobody else is ever served, not even a client that
//! connects much later. The process is alive and uses no CPU.
//!
//! Find who is waiting for whom, and change what is needed so that a full
//! queue only makes clients wait. Edit this file only. Grade with
//! `just exercise pool-deadlock` (or `bash scripts/exercise.sh pool-deadlock`).
//!
//! Syscalls: `accept(2)` in the main thread, `read(2)`, `write(2)` and
//! `shutdown(2)` in the workers. Every wait between threads (an empty or a
//! full channel, a taken lock) is a `futex(2)`, which is why a stuck
//! server shows no CPU at all.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use clap::Args;
use crossbeam::channel::{self, Receiver, SendTimeoutError, Sender};
use echo_protocol::{ACCEPT_BACKOFF, Config, accept_error_is_transient, echo_until_eof};
use parking_lot::Mutex;

/// This server's own flags.
#[derive(Debug, Clone, Args)]
pub struct PoolFlags {
    /// Worker threads, each serving one connection at a time
    #[arg(long, default_value_t = 64, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub workers: u32,
    /// Accepted connections that may wait for a free worker
    #[arg(long, default_value_t = 64, value_name = "Q",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub queue: u32,
}

/// How often the acceptor, waiting for room in the queue, looks at the
/// shutdown flag.
const SHUTDOWN_CHECK: Duration = Duration::from_millis(100);

/// The connections the server holds, queued or being served.
#[derive(Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, SocketAddr>,
}

/// An accepted connection on its way to a worker.
struct Job {
    id: u64,
    peer: SocketAddr,
    stream: TcpStream,
}

/// Spawns the workers, then accepts connections and queues them until
/// shutdown is requested.
pub fn serve(listener: TcpListener, config: &Config, flags: PoolFlags) -> io::Result<()> {
    let table = Arc::new(Mutex::new(Table::default()));
    let (jobs, queue) = channel::bounded::<Job>(flags.queue as usize);
    for n in 1..=flags.workers {
        let queue = queue.clone();
        let table = Arc::clone(&table);
        let config = config.clone();
        thread::Builder::new()
            .name(format!("worker-{n}"))
            .spawn(move || worker(&queue, &table, &config))?;
    }

    loop {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if accept_error_is_transient(&e) => continue,
            Err(e) => {
                config.log(format_args!("accept: {e}"));
                // Out of descriptors, typically: the failed connection stays
                // in the backlog, so retrying at once would spin.
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        if config.shutdown.requested() {
            return Ok(());
        }
        // Admission: the cap check and the registration under one lock, so
        // that the count we check is the count we add to.
        let mut conns = table.lock();
        if conns.open.len() >= config.max_conns {
            config.log(format_args!("{peer}: refused, {} open", conns.open.len()));
            continue;
        }
        conns.next_id += 1;
        let id = conns.next_id;
        conns.open.insert(id, peer);
        config.log(format_args!(
            "{peer}: #{id} queued, {} open",
            conns.open.len()
        ));
        if !hand_off(&jobs, Job { id, peer, stream }, config) {
            return Ok(());
        }
    }
}

/// Puts `job` in the queue, waiting while it is full. Returns false if
/// shutdown was requested meanwhile.
fn hand_off(jobs: &Sender<Job>, job: Job, config: &Config) -> bool {
    let mut job = job;
    loop {
        match jobs.send_timeout(job, SHUTDOWN_CHECK) {
            Ok(()) => return true,
            Err(SendTimeoutError::Timeout(back)) if !config.shutdown.requested() => job = back,
            Err(_) => return false,
        }
    }
}

/// A worker: take a connection, echo until the client is done, unregister
/// it, take the next one.
fn worker(queue: &Receiver<Job>, table: &Mutex<Table>, config: &Config) {
    let mut buf = vec![0u8; 16 * 1024];
    for Job {
        id,
        peer,
        mut stream,
    } in queue.iter()
    {
        let result = echo_until_eof(&mut stream, &mut buf);
        let mut conns = table.lock();
        conns.open.remove(&id);
        match result {
            Ok(bytes) => config.log(format_args!(
                "{peer}: #{id} closed after {bytes} bytes, {} open",
                conns.open.len()
            )),
            Err(e) => config.log(format_args!(
                "{peer}: #{id}: {e}, {} open",
                conns.open.len()
            )),
        }
    }
}
