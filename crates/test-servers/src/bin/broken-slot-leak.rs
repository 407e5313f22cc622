//! `broken-slot-leak`: a thread-per-client echo server with a fixed
//! connection table whose slots are never given back.
//!
//! The bug, as it looks in real code: per-connection state lives in a
//! table of 512 slots (a C habit, or a slab); a slot is claimed at accept
//! and the release is missing on the path where the client closes. After
//! 512 connections every new one is turned away as "server full", though
//! nobody is connected. Correct: free the slot when the connection ends
//! (a guard that frees on drop cannot forget).
//!
//! Caught by `sequential-1000`: connection 512 is closed before any echo.
//! Cases with fewer connections (up to 500 in `idle-500`) pass when run
//! alone; in a full run the earlier cases use up the table first.
//!
//! Syscalls: `accept(2)`, `clone(2)`, blocking `read(2)`, `write(2)`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use echo_protocol::{Config, Model, NoFlags, accept_error_is_transient};

const MODEL: Model = Model {
    name: "broken-slot-leak",
    expected_limits: &[],
};

/// Table size.
const SLOTS_MAX: usize = 512;

/// Bytes echoed per slot; `u64::MAX` marks a free slot.
static SLOTS: [AtomicU64; SLOTS_MAX] = [const { AtomicU64::new(u64::MAX) }; SLOTS_MAX];

fn main() -> ExitCode {
    echo_protocol::run(&MODEL, serve)
}

fn serve(listener: TcpListener, config: &Config, _: NoFlags) -> io::Result<()> {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) if accept_error_is_transient(&e) => continue,
            Err(e) => return Err(e),
        };
        if config.shutdown.requested() {
            return Ok(());
        }
        let Some(slot) = claim() else {
            // "Server full": turned away before any echo.
            drop(stream);
            continue;
        };
        thread::spawn(move || client(stream, slot));
    }
    Ok(())
}

fn client(mut s: TcpStream, slot: usize) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if s.write_all(&buf[..n]).is_err() {
            break;
        }
        SLOTS[slot].fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = s.shutdown(Shutdown::Write);
    // THE BUG: the slot is never released here.
}

/// Claims a free slot (byte counters at u64::MAX mean free).
fn claim() -> Option<usize> {
    SLOTS.iter().position(|s| {
        s.compare_exchange(u64::MAX, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}
