//! TASK: the child waits for EOF for ever; close every write end it waits on.
//!
//! `count_in_child` forks a child, sends it `data` through one pipe, and
//! reads back through another what the child counted (bytes and lines,
//! read until EOF by the ready-made `count_until_eof`). It compiles, the
//! child starts, the data goes through, and then both processes wait for
//! each other for ever: the child for EOF on its input, the parent for the
//! child's answer.
//!
//! A reader sees EOF on a pipe only when every descriptor for its write
//! end is closed, in every process that holds one; `fork` gave the child a
//! copy of every descriptor the parent had. Find which write ends are
//! still open, where, and close them. Edit this file only. Grade with
//! `just exercise pipe-eof` (or `bash scripts/exercise.sh pipe-eof`).
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
            // The child does not read its own answer.
            drop(from_child_r);
            let code = match count_until_eof(to_child_r.as_fd(), from_child_w.as_fd()) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            // SAFETY: _exit ends the child without running the parent's
            // atexit handlers or flushing its copied stdio buffers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            // The parent neither reads the child's input nor writes its
            // answer.
            drop(to_child_r);
            drop(from_child_w);

            let mut input = File::from(to_child_w);
            input.write_all(data)?;

            let mut answer = [0u8; 16];
            File::from(from_child_r).read_exact(&mut answer)?;

            match waitpid(child, None)? {
                WaitStatus::Exited(_, 0) => Ok(Counts::from_bytes(answer)),
                other => Err(io::Error::other(format!("the child ended with {other:?}"))),
            }
        }
    }
}
