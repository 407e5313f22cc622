//! The server contract shared by every `echo-<model>` binary, and nothing else.
//!
//! A model's `main.rs` is one call:
//!
//! ```no_run
//! # fn serve(_: std::net::TcpListener, _: &echo_protocol::Config, _: echo_protocol::NoFlags)
//! #     -> std::io::Result<()> { Ok(()) }
//! fn main() -> std::process::ExitCode {
//!     echo_protocol::run(&echo_protocol::Model { name: "echo-example", expected_limits: &[] }, serve)
//! }
//! ```
//!
//! [`run`] parses the common flags (`--addr`, `--max-conns`, `--verbose`) and
//! the model's own, raises `RLIMIT_NOFILE` to its hard limit, binds with
//! `SO_REUSEADDR` and a deep listen backlog, installs the SIGINT/SIGTERM
//! handling, prints the readiness line and hands the listener to the model.
//!
//! It also holds the echo protocol itself, twice. [`echo_until_eof`] is the
//! echo of one blocking socket: every blocking model (iterative,
//! thread-per-client, fork-per-client, prefork, thread pool) serves a
//! connection with it, and differs only in how it gets connections to it.
//! [`nonblocking::Echo`] is the echo of one non-blocking socket (what was
//! read and not yet written back, bounded), with [`nonblocking::accept_one`]
//! for the listener: every readiness model (busy-poll, select, poll, epoll,
//! mio) calls them once a socket is ready, and differs only in how it
//! learns that.
//!
//! What this crate deliberately does *not* hold: an event loop, a
//! readiness mechanism, a table of connections. Those are what the models
//! differ in, so each model writes its own, and a reader sees the whole
//! design in one crate.

#![warn(missing_docs)]

mod args;
mod echo;
pub mod nonblocking;
mod shutdown;

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;

use socket2::{Domain, Protocol, Socket, Type};

pub use args::{CommonArgs, DEFAULT_ADDR, DEFAULT_MAX_CONNS, NoFlags};
pub use echo::echo_until_eof;
pub use shutdown::{GRACE_PERIOD, Shutdown};

/// Exit status for bad command-line arguments (clap uses the same).
pub const EXIT_USAGE: u8 = 2;
/// Exit status for a runtime failure such as an address already in use.
pub const EXIT_FAILURE: u8 = 1;

/// Listen backlog: std's `TcpListener::bind` uses 128, which overflows as
/// soon as a benchmark opens a few hundred connections at once; the kernel
/// clamps this to `net.core.somaxconn` (4096 on current kernels).
pub const LISTEN_BACKLOG: i32 = 4096;

/// What a model tells the contract about itself.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// The binary's name, `echo-<id>`, used in messages and `--help`.
    pub name: &'static str,
    /// Conformance cases this design cannot meet by construction (for
    /// `iterative`, every case that needs two clients served at once). The
    /// hidden flag `--expected-limits` prints them, one per line, so the
    /// harness learns them from the binary itself: this is the one place a
    /// model declares them.
    pub expected_limits: &'static [&'static str],
}

/// The settings every model receives, after parsing and binding.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address the listener is actually bound to (real port, not 0).
    pub addr: SocketAddr,
    /// Most connections served at once; a model closes connections beyond it.
    pub max_conns: usize,
    /// Log connection events to stderr.
    pub verbose: bool,
    /// The open-files soft limit after raising it.
    pub nofile_limit: u64,
    /// Set when SIGINT or SIGTERM arrives.
    pub shutdown: Shutdown,
}

impl Config {
    /// Writes one line to stderr when `--verbose` is on. Takes
    /// `format_args!` so that nothing is formatted when it is off.
    pub fn log(&self, args: std::fmt::Arguments<'_>) {
        if self.verbose {
            eprintln!("{args}");
        }
    }
}

/// Parses the command line, binds, prints the readiness line and calls
/// `serve`. Returns the process exit status: 0 after a clean shutdown, 2 for
/// bad arguments, 1 for a runtime failure. `A` is the model's own flags
/// (use [`NoFlags`] for none).
pub fn run<A, F>(model: &Model, serve: F) -> ExitCode
where
    A: clap::Args + clap::FromArgMatches,
    F: FnOnce(TcpListener, &Config, A) -> io::Result<()>,
{
    let (common, extra) = match args::parse::<A>(model, std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(err) => {
            // clap prints "error: …" plus usage and picks the status: 2 for
            // usage errors, 0 for --help and --version.
            let _ = err.print();
            return ExitCode::from(err.exit_code() as u8);
        }
    };
    if common.expected_limits {
        for case in model.expected_limits {
            println!("{case}");
        }
        return ExitCode::SUCCESS;
    }

    // Block the signals before any thread exists, so every thread the model
    // spawns inherits the mask and only the shutdown thread receives them.
    let shutdown = match Shutdown::install() {
        Ok(s) => s,
        Err(e) => return fail(model, format_args!("cannot install signal handling: {e}")),
    };
    let nofile_limit = match raise_nofile_limit() {
        Ok(n) => n,
        Err(e) => return fail(model, format_args!("cannot raise RLIMIT_NOFILE: {e}")),
    };
    let listener = match bind(common.addr) {
        Ok(l) => l,
        Err(e) => return fail(model, format_args!("cannot listen on {}: {e}", common.addr)),
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => return fail(model, format_args!("cannot read the bound address: {e}")),
    };
    shutdown.watch(addr);
    let config = Config {
        addr,
        max_conns: common.max_conns as usize,
        verbose: common.verbose,
        nofile_limit,
        shutdown,
    };
    if let Err(e) = announce(addr) {
        return fail(model, format_args!("cannot write the readiness line: {e}"));
    }
    match serve(listener, &config, extra) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(model, format_args!("{e}")),
    }
}

fn fail(model: &Model, msg: std::fmt::Arguments<'_>) -> ExitCode {
    eprintln!("{}: {msg}", model.name);
    ExitCode::from(EXIT_FAILURE)
}

/// Prints `listening on <addr>` to stdout and flushes, once. Harnesses wait
/// for this line instead of sleeping and hoping the port is open.
pub fn announce(addr: SocketAddr) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "listening on {addr}")?;
    out.flush()
}

/// Binds a TCP listener with `SO_REUSEADDR` (a restarted server does not wait
/// out TIME_WAIT) and a backlog of [`LISTEN_BACKLOG`].
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

// ANCHOR: reuseport
/// Turns the listener [`run`] bound into a group of `n` listeners on the
/// same address, each with `SO_REUSEPORT`: the kernel then picks one of them
/// for each new connection by a hash of its addresses and ports, and each
/// thread or process of a model accepts on its own. Slot 0 is `first`.
///
/// The contract bound one socket, without `SO_REUSEPORT`, and has already
/// announced its port. Rather than closing it and binding N new ones (a
/// window in which the announced port refuses connections, or is taken by
/// someone else), the contract's socket joins the group as slot 0: Linux
/// forms a reuseport group when a socket with the option *listens* and
/// finds listeners on the port that have it, so setting it late on the
/// first socket is enough. (socket(7) asks for the option before `bind`;
/// on a kernel that refuses, the `bind` below fails with a clear error.)
///
/// Syscalls: `setsockopt(SO_REUSEADDR, SO_REUSEPORT)`, `socket(2)`,
/// `bind(2)`, `listen(2)`.
pub fn reuseport_group(
    first: TcpListener,
    addr: SocketAddr,
    n: usize,
) -> io::Result<Vec<TcpListener>> {
    socket2::SockRef::from(&first).set_reuse_port(true)?;
    let mut group = vec![first];
    for _ in 1..n {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket
            .bind(&addr.into())
            .map_err(|e| io::Error::new(e.kind(), format!("SO_REUSEPORT bind of {addr}: {e}")))?;
        socket.listen(LISTEN_BACKLOG)?;
        group.push(socket.into());
    }
    Ok(group)
}
// ANCHOR_END: reuseport

/// Turns Nagle's algorithm off on an accepted connection (`TCP_NODELAY`,
/// tcp(7)), as production servers do (Apache, nginx's `tcp_nodelay`, Go by
/// default). Every model calls it on each connection it accepts.
///
/// Why: a model that echoes one message in several writes (a blocking
/// model reading 16 KiB at a time and echoing a 64 KiB message; io_uring's
/// 16 KiB buffers) would otherwise have each write after the first held
/// back until the client acknowledged the first, and the client delays
/// that ACK, by up to 40 ms on Linux, hoping to piggyback it on data of its
/// own, which a client waiting for its echo never sends. Measured with
/// `echo-bench run thread-per-client --conns 1 --size 65536`: 44 ms per
/// echo with Nagle, 0.1 ms without. The price is one `setsockopt(2)` per
/// connection and, for a server that writes many small pieces, more and
/// smaller segments; an echo server writes what it read, so none here.
/// A failure is ignored: the connection still works, only slower.
pub fn no_delay(stream: &std::net::TcpStream) {
    let _ = stream.set_nodelay(true);
}

/// True for an `accept(2)` error that concerns only the connection being
/// accepted, so the next `accept` may well succeed: `ECONNABORTED` (the
/// client reset while still in the backlog), `EINTR`, and the network
/// errors Linux reports on the new socket through `accept` itself (accept(2),
/// "Error handling"). False for trouble of the process or the listener
/// (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`, `EBADF`...), which each model
/// handles in its own way.
pub fn accept_error_is_transient(e: &io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(
            Errno::ECONNABORTED
                | Errno::EINTR
                | Errno::EPROTO
                | Errno::ENETDOWN
                | Errno::ENOPROTOOPT
                | Errno::EHOSTDOWN
                | Errno::ENONET
                | Errno::EHOSTUNREACH
                | Errno::EOPNOTSUPP
                | Errno::ENETUNREACH
        )
    )
}

/// True for an `accept(2)` error that says the process or the system is
/// short of descriptors or memory (`EMFILE`, `ENFILE`, `ENOBUFS`,
/// `ENOMEM`). The connection stays in the listen backlog, so a loop that
/// retries at once spins; a blocking model waits [`ACCEPT_BACKOFF`] for
/// its clients to release some, an event loop has its own remedy (a
/// spare descriptor, say).
pub fn accept_error_is_shortage(e: &io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)
    )
}

/// How long a blocking model waits before it retries `accept` after an
/// error of [`accept_error_is_shortage`]: long next to an `accept`, short
/// next to the time a client takes to leave.
pub const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(10);

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns it. Every
/// connection costs a descriptor; the usual soft limit of 1024 would cap a
/// server far below what the machine allows.
pub fn raise_nofile_limit() -> io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io::Error::from)?;
    }
    Ok(hard)
}
