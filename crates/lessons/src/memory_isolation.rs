//! Memory isolation: a forked child writes to its own copy; a thread writes
//! to the one shared copy.
//!
//! Seed topic: "data is isolated between processes" (a global changed in a
//! `Process` is unchanged in the parent) and "threads of one process share
//! data" (`money = 666` in a `Thread` is seen by the main thread).
//!
//! Syscalls and APIs: `fork(2)` (the child gets a copy-on-write copy of the
//! whole address space), `pipe(2)` to bring the child's value back,
//! `waitpid(2)`; `std::thread::spawn` with `Arc<AtomicU64>` for sharing.
//!
//! Trade-offs: isolation is safety for free (a child cannot corrupt the
//! parent) but every exchange must go through the kernel (a pipe, a socket,
//! a file). Sharing is free and fast but needs synchronisation: here an
//! atomic, elsewhere a `Mutex`.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use nix::sys::wait::WaitStatus;

use crate::spawn_join::{fork_child, read_exact_timeout, wait_child, write_all_fd};

/// The starting value, as in the seeds' `money = 100`.
pub const START: u64 = 100;
/// The value the child or the thread writes.
pub const WRITTEN: u64 = 666;

/// What each side saw after the write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isolation {
    /// The value the forked child read back after writing.
    pub child_value: u64,
    /// The address of the value inside the child.
    pub child_address: usize,
    /// The parent's value after the child exited.
    pub parent_value_after_child: u64,
    /// The address of the value inside the parent.
    pub parent_address: usize,
    /// The main thread's value after the spawned thread wrote.
    pub main_value_after_thread: u64,
}

/// Lets a forked child and then a thread overwrite a value, and reports what
/// the parent sees each time.
pub fn observe() -> crate::Result<Isolation> {
    // On the heap on purpose: the whole address space is copied, heap included.
    let money = Box::new(AtomicU64::new(START));
    let parent_address = &*money as *const AtomicU64 as usize;

    let (r, w) = nix::unistd::pipe()?;
    let child = fork_child(|| {
        money.store(WRITTEN, Ordering::SeqCst);
        let mut msg = [0u8; 16];
        msg[..8].copy_from_slice(&money.load(Ordering::SeqCst).to_le_bytes());
        msg[8..].copy_from_slice(&(&*money as *const AtomicU64 as u64).to_le_bytes());
        match write_all_fd(w.as_fd(), &msg) {
            Ok(()) => 0,
            Err(_) => 1,
        }
    })?;
    drop(w);
    let mut msg = [0u8; 16];
    let read = read_exact_timeout(r.as_fd(), &mut msg, Duration::from_secs(5));
    let status = wait_child(child, Duration::from_secs(5))?;
    read?;
    if status != WaitStatus::Exited(child, 0) {
        return Err(format!("the child ended with {status:?}").into());
    }
    let child_value = u64::from_le_bytes(msg[..8].try_into()?);
    let child_address = u64::from_le_bytes(msg[8..].try_into()?) as usize;
    let parent_value_after_child = money.load(Ordering::SeqCst);

    let shared = Arc::new(AtomicU64::new(START));
    let for_thread = Arc::clone(&shared);
    thread::spawn(move || for_thread.store(WRITTEN, Ordering::SeqCst))
        .join()
        .map_err(|_| "the thread panicked")?;
    let main_value_after_thread = shared.load(Ordering::SeqCst);

    Ok(Isolation {
        child_value,
        child_address,
        parent_value_after_child,
        parent_address,
        main_value_after_thread,
    })
}

/// Runs the lesson.
pub fn run() -> crate::Result {
    let o = observe()?;
    println!(
        "[parent] money = {START} at {:#x}; forking",
        o.parent_address
    );
    println!(
        "[child]  set money = {} at {:#x}",
        o.child_value, o.child_address
    );
    println!(
        "[parent] money = {} after the child set it to {} (same address, separate copy)",
        o.parent_value_after_child, o.child_value
    );
    println!(
        "[main]   money = {} after a thread set it to {WRITTEN} (one copy, shared)",
        o.main_value_after_thread
    );
    Ok(())
}
