//! Provided buffers: a pool of receive buffers the kernel picks from when
//! data arrives, through a buffer ring (`IORING_REGISTER_PBUF_RING`,
//! Linux 5.19), so that a multishot recv needs no buffer of its own and an
//! idle connection holds none.
//!
//! Syscalls: `io_uring_register(2)` once to register the ring. After that
//! no syscall at all: handing a buffer to the kernel is writing an entry
//! into the ring (memory shared with the kernel) and publishing the new
//! tail with a release store; the kernel takes entries from the head.
//!
//! Ownership: a buffer in the ring belongs to the kernel, which may write
//! into it whenever data arrives on any connection with a multishot recv
//! armed. A recv completion hands one buffer (its id is in the CQE's flags)
//! to us; we own it until we give it back, which must wait until its
//! bytes were all sent: the send reads the buffer too. So the pool must
//! outlive every operation that may use it, and a buffer is returned
//! exactly once.
//!
//! Trade-off: memory follows traffic, not connections. The pool grows by
//! [`SLAB`] buffers when the kernel finds it empty (`ENOBUFS`), up to
//! [`RING_ENTRIES`]; its size is what was in flight at the busiest moment.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;
use io_uring::types::BufRingEntry;

use crate::BUFFER_SIZE;

/// The buffer group id our multishot receives name.
pub(crate) const GROUP: u16 = 0;

/// Entries of the buffer ring: the most buffers the pool can hold (the
/// kernel's limit is 32768). 16 Ki × 16 KiB = 256 MiB at most, which only
/// clients that send without reading can pin (each is stopped after
/// [`crate::QUEUE_CAP`] buffers).
pub(crate) const RING_ENTRIES: u16 = 16 * 1024;

/// Buffers added at a time: 64 × 16 KiB = 1 MiB.
pub(crate) const SLAB: usize = 64;

pub(crate) struct Pool {
    /// The ring: `RING_ENTRIES` entries, page-aligned, shared with the
    /// kernel from registration on.
    entries: *mut BufRingEntry,
    layout: Layout,
    /// Our copy of the tail: entries before it are the kernel's.
    tail: u16,
    /// The buffers, `SLAB` per allocation; buffer id `b` is
    /// `slabs[b / SLAB][(b % SLAB) * BUFFER_SIZE..][..BUFFER_SIZE]`.
    slabs: Vec<Box<[u8]>>,
    /// Buffers in the ring, the kernel's to take.
    free: usize,
}

impl Pool {
    /// Allocates and registers the ring, with one slab of buffers in it.
    pub(crate) fn register(ring: &IoUring) -> io::Result<Pool> {
        let layout =
            Layout::from_size_align(RING_ENTRIES as usize * size_of::<BufRingEntry>(), 4096)
                .expect("a valid layout");
        // SAFETY: the layout has a non-zero size.
        let entries = unsafe { alloc_zeroed(layout) }.cast::<BufRingEntry>();
        if entries.is_null() {
            return Err(io::ErrorKind::OutOfMemory.into());
        }
        let mut pool = Pool {
            entries,
            layout,
            tail: 0,
            slabs: Vec::new(),
            free: 0,
        };
        // `Drop` runs only after the ring is closed: the ring is declared
        // first in `Server`, and a pool with operations in flight is leaked.
        // SAFETY: `entries` points to `RING_ENTRIES` zeroed, page-aligned
        // entries that stay allocated until `Drop`.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                pool.entries as u64,
                RING_ENTRIES,
                GROUP,
                0,
            )?;
        }
        pool.grow();
        Ok(pool)
    }

    /// Adds a slab of buffers, if the ring has room; false if not.
    pub(crate) fn grow(&mut self) -> bool {
        let first = self.slabs.len() * SLAB;
        if first + SLAB > RING_ENTRIES as usize {
            return false;
        }
        // calloc'd, and 1 MiB: glibc maps a block this large fresh from the
        // kernel, so a buffer's pages cost memory only once data lands in them.
        self.slabs
            .push(vec![0; SLAB * BUFFER_SIZE].into_boxed_slice());
        for bid in first..first + SLAB {
            self.give_back(bid as u16);
        }
        true
    }

    /// Buffers in the pool, in the ring or not.
    pub(crate) fn len(&self) -> usize {
        self.slabs.len() * SLAB
    }

    /// Buffers in the ring.
    pub(crate) fn free(&self) -> usize {
        self.free
    }

    /// A completion said the kernel took a buffer out of the ring.
    pub(crate) fn taken(&mut self) {
        self.free -= 1;
    }

    /// The first `len` bytes of buffer `bid`.
    pub(crate) fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        let bid = bid as usize;
        &self.slabs[bid / SLAB][(bid % SLAB) * BUFFER_SIZE..][..len]
    }

    /// Hands buffer `bid` (back) to the kernel. Only once nothing of ours
    /// reads it any more: its send completed in full, or its connection is
    /// being closed.
    pub(crate) fn give_back(&mut self, bid: u16) {
        let addr = self.bytes(bid, BUFFER_SIZE).as_ptr() as u64;
        let mask = RING_ENTRIES - 1;
        // SAFETY: the index is below RING_ENTRIES, so the entry is inside
        // the allocation; the kernel reads only entries between its head
        // and the published tail, and this one is at our unpublished tail.
        let entry = unsafe { &mut *self.entries.add((self.tail & mask) as usize) };
        entry.set_addr(addr);
        entry.set_len(BUFFER_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        self.free += 1;
        // The kernel reads the tail concurrently, hence an atomic store,
        // released so that the entry above is visible before the tail.
        // SAFETY: the tail field is the `resv` of entry 0, inside the
        // allocation and 2-byte aligned.
        unsafe {
            let tail = BufRingEntry::tail(self.entries).cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: allocated in `register` with this layout; the ring that
        // shared it is closed (see `register`).
        unsafe { dealloc(self.entries.cast(), self.layout) }
    }
}
