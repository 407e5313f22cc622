//! The accept lock of UNP section 30.7: an `fcntl(2)` record lock on a
//! file that every worker locks before `accept(2)` and unlocks after, so
//! that one worker at a time sleeps in `accept`.
//!
//! Syscalls: `open(2)` and `unlink(2)` of a temporary file (the descriptor
//! keeps it alive, and no file is left behind), `fcntl(F_SETLKW)` to take
//! the lock (sleeping while another process holds it), `fcntl(F_SETLK)` with
//! `F_UNLCK` to release it.
//!
//! Trade-offs: a record lock belongs to a *process*, so one file opened
//! before `fork` serves every worker, and the kernel drops the lock of a
//! worker that dies. Its pitfall: closing *any* descriptor of that file
//! drops the process's lock. `flock(2)` locks belong to the open file
//! description instead, which a `fork` shares: workers sharing one
//! descriptor would not exclude each other, so each would have to open the
//! file itself. (On Linux a blocking `accept` on a shared listener wakes one
//! sleeper per connection anyway; the lock is UNP's answer to kernels that
//! woke them all, and it costs two system calls per connection.)

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};

/// The lock file, opened once by the parent before it forks.
pub struct AcceptLock {
    file: File,
}

/// The lock, held until dropped.
pub struct AcceptGuard<'a> {
    lock: &'a AcceptLock,
}

impl AcceptLock {
    /// Creates and unlinks a temporary file to lock.
    pub fn new() -> io::Result<AcceptLock> {
        let path = std::env::temp_dir().join(format!(
            "ex-prefork-accept-lock.{}.{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(AcceptLock { file })
    }

    /// Takes the lock, sleeping while another process holds it.
    pub fn lock(&self) -> io::Result<AcceptGuard<'_>> {
        let request = whole_file(libc::F_WRLCK);
        loop {
            match fcntl(self.file.as_fd(), FcntlArg::F_SETLKW(&request)) {
                Ok(_) => return Ok(AcceptGuard { lock: self }),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Drop for AcceptGuard<'_> {
    fn drop(&mut self) {
        let request = whole_file(libc::F_UNLCK);
        let _ = fcntl(self.lock.file.as_fd(), FcntlArg::F_SETLK(&request));
    }
}

/// A record-lock request of `kind` covering the whole file.
fn whole_file(kind: libc::c_int) -> libc::flock {
    // SAFETY: `flock` is a plain C struct of integers, valid when zeroed.
    let mut request: libc::flock = unsafe { std::mem::zeroed() };
    request.l_type = kind as libc::c_short;
    request.l_whence = libc::SEEK_SET as libc::c_short;
    request.l_start = 0;
    request.l_len = 0; // 0: to the end of the file, however long
    request
}
