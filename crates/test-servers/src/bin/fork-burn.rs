//! `fork-burn`: a forking echo server whose children and grandchildren burn
//! a known amount of CPU, against which the harness's process-tree figures
//! are checked (`crates/echo-bench/tests/fork_burn.rs`).
//!
//! Run with `cargo run -p test-servers --bin fork-burn -- --addr 127.0.0.1:0
//! --child-burn-ms 150 --grandchild-burn-ms 100`.
//!
//! Syscalls: `mmap(2)` (through the allocator) for `--shared-mib` of memory
//! touched before accepting; `sigaction(2)` setting SIGCHLD to `SIG_IGN`,
//! so the kernel reaps children itself and their CPU time never reaches
//! our `cutime` (what a `/proc` walk cannot see); `accept(2)`, then
//! `fork(2)` per client; in the child a blocking `read(2)`/`write(2)` echo
//! until EOF, `fork(2)` of a grandchild, `clock_gettime(2)` on
//! `CLOCK_PROCESS_CPUTIME_ID` to burn, `waitpid(2)`, `close(2)`, `_exit(2)`.
//!
//! Shape of one connection, so that every burn falls inside the load's
//! measured window (which ends when the last connection closes): echo until
//! the client half-closes; fork a grandchild that burns
//! `--grandchild-burn-ms` and exits; burn `--child-burn-ms`; wait for the
//! grandchild; only then close. The echo loop is written here rather than
//! taken from `echo_protocol::echo_until_eof`, because that one half-closes
//! our side at EOF, and the client would see the end before the burns.
//!
//! Fork safety: the parent is multi-threaded (the contract's shutdown
//! thread), and after `fork` only the forking thread exists in the child,
//! so a lock held by another thread at that moment stays held forever.
//! The child therefore does only async-signal-safe things: system calls on
//! its socket, a stack buffer (no `malloc`), `fork`, `clock_gettime`,
//! `waitpid` and `_exit` (no destructors, no stdio: it never logs). The
//! children inherit the blocked SIGTERM, so a shutdown lets them finish.
//!
//! Trade-offs: `--max-conns` is ignored (a test server, not a model); the
//! shared memory is only read by children, so it stays shared, which is
//! what the memory figure is checked against.

use std::hint::black_box;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use echo_protocol::Config;
use nix::sys::signal::{SigHandler, Signal, signal};
use nix::sys::wait::waitpid;
use nix::time::{ClockId, clock_gettime};
use nix::unistd::{ForkResult, fork};
use test_servers::{accept, model};

/// This server's own flags.
#[derive(Debug, clap::Args)]
struct Flags {
    /// Memory allocated and touched before accepting, shared by every child
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    shared_mib: usize,
    /// CPU each child burns after its client's EOF, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 0)]
    child_burn_ms: u64,
    /// CPU each grandchild burns, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 0)]
    grandchild_burn_ms: u64,
}

fn main() -> ExitCode {
    echo_protocol::run(&model("fork-burn"), serve)
}

fn serve(listener: TcpListener, config: &Config, flags: Flags) -> io::Result<()> {
    let shared = touched(flags.shared_mib << 20);
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler
    // code; nothing else in this process relies on SIGCHLD.
    unsafe { signal(Signal::SIGCHLD, SigHandler::SigIgn) }.map_err(io::Error::from)?;
    let child_burn = Duration::from_millis(flags.child_burn_ms);
    let grandchild_burn = Duration::from_millis(flags.grandchild_burn_ms);
    loop {
        let Some((stream, peer)) = accept(&listener)? else {
            continue;
        };
        if config.shutdown.requested() {
            return Ok(());
        }
        // SAFETY: the child runs only async-signal-safe code (see the
        // module header): `connection` uses the socket, a stack buffer,
        // fork, clock_gettime, waitpid and _exit.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                drop(listener);
                let code = connection(stream, child_burn, grandchild_burn);
                // SAFETY: _exit ends the process at once, running none of
                // the parent's destructors or atexit handlers.
                unsafe { libc::_exit(code) }
            }
            Ok(ForkResult::Parent { .. }) => {
                config.log(format_args!("{peer}: forked"));
                drop(stream);
            }
            Err(e) => config.log(format_args!("{peer}: cannot fork: {e}; closed")),
        }
        black_box(&shared);
    }
}

/// `bytes` of heap, every page written, so that it is resident before the
/// first fork and shared copy-on-write by every child afterwards.
fn touched(bytes: usize) -> Vec<u8> {
    let mut v = vec![0u8; bytes];
    for page in v.chunks_mut(4096) {
        page[0] = 1;
    }
    black_box(v)
}

/// One client, in the forked child; returns the exit status.
fn connection(mut stream: TcpStream, child_burn: Duration, grandchild_burn: Duration) -> i32 {
    let mut buf = [0u8; 16 * 1024];
    let echoed = loop {
        match stream.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if let Err(e) = stream.write_all(&buf[..n]) {
                    break Err(e);
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    // The default disposition again, so that this child can wait for its
    // own grandchild (with SIG_IGN, waitpid would only report ECHILD).
    // SAFETY: SIG_DFL installs no handler code.
    let _ = unsafe { signal(Signal::SIGCHLD, SigHandler::SigDfl) };
    // SAFETY: the grandchild only burns CPU and calls _exit.
    let grandchild = match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            burn(grandchild_burn);
            // SAFETY: as for the child, no destructors.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => Some(child),
        Err(_) => None,
    };
    burn(child_burn);
    if let Some(pid) = grandchild {
        let _ = waitpid(pid, None);
    }
    drop(stream);
    match (echoed, grandchild) {
        (Ok(()), Some(_)) => 0,
        _ => 1,
    }
}

/// Spins until this process has used `d` of CPU, as its own CPU clock
/// counts it: time spent waiting for the CPU does not count, so the burn
/// is the same however many burners share a core.
fn burn(d: Duration) {
    let now = || {
        clock_gettime(ClockId::CLOCK_PROCESS_CPUTIME_ID)
            .map(Duration::from)
            .unwrap_or_default()
    };
    let end = now() + d;
    let mut x = 0u64;
    while now() < end {
        for i in 0..1000u64 {
            x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
    }
}
