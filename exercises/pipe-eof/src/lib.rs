//! Exercise `pipe-eof`: a parent hands data to a child process through a
//! pipe, the child reads it until EOF and sends back what it counted.
//!
//! Edit `src/starter.rs`; grade with `just exercise pipe-eof`. The
//! `solution` feature builds `src/solution.rs` instead. The lesson behind it
//! is `cargo run -p lessons -- ipc` (`notes/lessons-processes.md`).

#![warn(missing_docs)]

#[cfg(not(feature = "solution"))]
#[path = "starter.rs"]
mod imp;
#[cfg(feature = "solution")]
#[path = "solution.rs"]
mod imp;

pub use imp::count_in_child;

/// What the child counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Bytes read from the pipe.
    pub bytes: u64,
    /// Newlines among them.
    pub lines: u64,
}

impl Counts {
    /// The 16 bytes the child writes back: `bytes`, then `lines`, each a
    /// little-endian `u64`.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.bytes.to_le_bytes());
        out[8..].copy_from_slice(&self.lines.to_le_bytes());
        out
    }

    /// The reverse of [`Counts::to_bytes`].
    pub fn from_bytes(b: [u8; 16]) -> Self {
        let mut half = [0u8; 8];
        half.copy_from_slice(&b[..8]);
        let bytes = u64::from_le_bytes(half);
        half.copy_from_slice(&b[8..]);
        Self {
            bytes,
            lines: u64::from_le_bytes(half),
        }
    }
}

/// The child's side, ready-made: reads `input` until EOF, counting bytes
/// and newlines, then writes the counts to `output`. Only `read(2)` and
/// `write(2)` on a stack buffer: after `fork` in a multi-threaded program
/// the child may only make async-signal-safe calls, and allocating is not
/// one (another thread may have held the allocator's lock at the fork).
pub fn count_until_eof(
    input: std::os::fd::BorrowedFd<'_>,
    output: std::os::fd::BorrowedFd<'_>,
) -> nix::Result<()> {
    let mut counts = Counts { bytes: 0, lines: 0 };
    let mut buf = [0u8; 4096];
    loop {
        match nix::unistd::read(input, &mut buf) {
            // EOF: every write end of the pipe is closed, in every process.
            Ok(0) => break,
            Ok(n) => {
                counts.bytes += n as u64;
                counts.lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    let out = counts.to_bytes();
    let mut sent = 0;
    while sent < out.len() {
        match nix::unistd::write(output, &out[sent..]) {
            Ok(n) => sent += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Makes the kernel kill this (child) process when the thread that forked
/// it exits, so that a child stuck in `read` does not outlive a failed
/// grade. `parent` is the forking process's pid, read before the fork: if
/// it already exited, the death signal was missed and the child leaves now.
pub fn die_with_parent(parent: nix::unistd::Pid) {
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    if nix::unistd::getppid() != parent {
        // SAFETY: _exit ends the process at once, without running any
        // handler or destructor; it is async-signal-safe.
        unsafe { libc::_exit(1) };
    }
}
