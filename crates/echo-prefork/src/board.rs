//! The busy flags: one `AtomicU32` per worker slot in a page shared by the
//! parent and every worker, which is how `--max-conns` is enforced across
//! processes that share no other memory.
//!
//! # Syscalls
//!
//! `mmap(2)` with `MAP_SHARED | MAP_ANONYMOUS` once at start (before the
//! first `fork`, so every worker inherits the same page), `munmap(2)` at the
//! end.
//!
//! # Trade-offs
//!
//! Atomics only, no lock: a process-shared mutex (`PTHREAD_PROCESS_SHARED`)
//! would make admission exact, but a worker killed while holding it would
//! leave it held for everyone (a robust mutex can recover, at the cost of
//! more code). The price is that two workers admitting at the same instant
//! may both refuse.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};

// ANCHOR: board
/// One busy flag per worker slot, in memory shared by the parent and every
/// worker (`MAP_SHARED`: the only memory a `fork` does not copy). It
/// enforces `--max-conns` across processes; a worker's flag is cleared by
/// the worker when its client leaves, or by the parent when it reaps a
/// worker that died serving.
pub(crate) struct Board {
    flags: NonNull<AtomicU32>,
    len: usize,
}

impl Board {
    pub(crate) fn new(len: usize) -> io::Result<Board> {
        let bytes = std::num::NonZeroUsize::new(len * size_of::<AtomicU32>())
            .ok_or_else(|| io::Error::other("no workers"))?;
        // SAFETY: a fresh anonymous mapping, not aliasing anything; zeroed
        // by the kernel, which is a valid `AtomicU32` (0, idle) in each slot.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                bytes,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }?;
        Ok(Board {
            flags: ptr.cast(),
            len,
        })
    }

    pub(crate) fn flags(&self) -> &[AtomicU32] {
        // SAFETY: `flags` points to `len` zero-initialised, suitably aligned
        // (page-aligned) `AtomicU32`s that live until `drop`; all access
        // is atomic, so sharing them with other processes is sound.
        unsafe { std::slice::from_raw_parts(self.flags.as_ptr(), self.len) }
    }

    pub(crate) fn busy(&self) -> usize {
        self.flags()
            .iter()
            .filter(|f| f.load(Ordering::SeqCst) != 0)
            .count()
    }

    /// Marks slot `i` busy unless that makes more than `max` busy. Set, then
    /// count (both SeqCst): of two workers admitting at once, at least one
    /// sees the other's flag, so `max` is never exceeded; both may refuse,
    /// which errs on the side of refusing. A lock would avoid that, at the
    /// price of a process-shared mutex a dying worker could leave held.
    pub(crate) fn try_admit(&self, i: usize, max: usize) -> bool {
        self.flags()[i].store(1, Ordering::SeqCst);
        if self.busy() > max {
            self.release(i);
            return false;
        }
        true
    }

    pub(crate) fn release(&self, i: usize) {
        self.flags()[i].store(0, Ordering::SeqCst);
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, of that size, no longer borrowed.
        let _ = unsafe { munmap(self.flags.cast(), self.len * size_of::<AtomicU32>()) };
    }
}
// ANCHOR_END: board
