//! Reference solution of `pipe-eof`: every process closes the ends of each
//! pipe it does not use, and the parent closes the input's write end as
//! soon as it has written.
//!
//! The starter held two descriptors for the input pipe's write end: the
//! parent's `input`, alive until the end of the function, so still open
//! while the parent waited for the answer; and the child's inherited copy
//! of `to_child_w`, never dropped because the child leaves through
//! `_exit`. The child's read would see EOF only after both were closed,
//! and neither could be: each process was waiting for the other. The
//! second one is the trap: the child waits for EOF on a pipe it holds
//! open itself. `pipe(7)` states the rule: a read sees end-of-file once
//! all descriptors referring to the write end have been closed.
//!
//! A multi-threaded program has a third source of stray write ends: a
//! child forked while another thread has its own pipes open inherits those
//! too, and keeps another process's reader from seeing EOF until it exits.
//! The cure is for the child to close every descriptor it did not mean to
//! inherit (`close_range(2)`), or to `exec`, with every pipe created
//! `O_CLOEXEC`; the grade runs one transfer at a time instead.
//!
//! Syscalls: `pipe(2)`, `fork(2)`, `read(2)`, `write(2)`, `close(2)` (an
//! `OwnedFd` or `File` closes its descriptor when dropped), `waitpid(2)`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork, getpid, pipe};

use crate::{Counts, count_until_eof, die_with_parent};

/// Has a child process count the bytes and lines of `data`.
pub fn count_in_child(data: &[u8]) -> io::Result<Counts> {
    let (to_child_r, to_child_w) = pipe()?;
    let (from_child_r, from_child_w) = pipe()?;
    let parent = getpid();

    // SAFETY: the child makes only async-signal-safe calls (prctl, close,
    // read, write on its stack, _exit) and never returns from this arm.
    match unsafe { fork() }? {
        ForkResult::Child => {
            die_with_parent(parent);
            // The child neither reads its own answer nor writes its own
            // input: while it held the input's write end, its read could
            // never see EOF.
            drop(from_child_r);
            drop(to_child_w);
            let code = match count_until_eof(to_child_r.as_fd(), from_child_w.as_fd()) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            // SAFETY: _exit ends the child without running the parent's
            // atexit handlers or flushing its copied stdio buffers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(to_child_r);
            drop(from_child_w);

            {
                let mut input = File::from(to_child_w);
                input.write_all(data)?;
            } // `input` is closed here: that close is the child's EOF

            let mut answer = [0u8; 16];
            File::from(from_child_r).read_exact(&mut answer)?;

            match waitpid(child, None)? {
                WaitStatus::Exited(_, 0) => Ok(Counts::from_bytes(answer)),
                other => Err(io::Error::other(format!("the child ended with {other:?}"))),
            }
        }
    }
}
