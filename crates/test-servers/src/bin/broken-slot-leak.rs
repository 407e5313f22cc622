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

use std::io;
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use echo_protocol::{Config, NoFlags};
use test_servers::{echo_client, model, next_client};

/// Table size.
const SLOTS_MAX: usize = 512;

/// Bytes echoed per slot; `u64::MAX` marks a free slot.
static SLOTS: [AtomicU64; SLOTS_MAX] = [const { AtomicU64::new(u64::MAX) }; SLOTS_MAX];

fn main() -> ExitCode {
    echo_protocol::run(&model("broken-slot-leak"), serve)
}

fn serve(listener: TcpListener, config: &Config, _: NoFlags) -> io::Result<()> {
    while let Some(stream) = next_client(&listener, config)? {
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
    let echoed = echo_client(&mut s);
    SLOTS[slot].fetch_add(echoed, Ordering::Relaxed);
    // THE BUG: the slot is never released here.
}

/// Claims a free slot (byte counters at u64::MAX mean free).
fn claim() -> Option<usize> {
    SLOTS.iter().position(|s| {
        s.compare_exchange(u64::MAX, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    })
}
