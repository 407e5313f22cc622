//! A chat server with rooms, over a line protocol, written twice: threads
//! sharing the state under a lock (`--impl threads`, the default), and
//! tokio tasks around one task that owns it (`--impl async`). The seeds
//! end with a socket.io chat whose rooms and broadcasts are a library's
//! business; here they are ours, so that what every chat server must
//! decide (who shares the state, where messages get their order, what a
//! member that stops reading costs the others) is in plain sight.
//!
//! Run with `cargo run -p chat -- --addr 127.0.0.1:7000 [--impl async]`,
//! then, in two other terminals, `nc 127.0.0.1 7000` and type:
//!
//! ```text
//! NICK ann
//! JOIN rust
//! SAY rust hello
//! ```
//!
//! # The protocol
//!
//! Lines of UTF-8 ended by `\n`, commands `NICK`, `JOIN`, `LEAVE`, `SAY
//! <room> <text>`, `ROOMS`, `WHO <room>`, `HELP`, `QUIT`; every server
//! line starts with `INFO`, `OK`, `ERR`, `MSG`, `EVENT`, `ROOM` or
//! `MEMBER`, so that a client tells an error from a broadcast by its
//! first word. The details are in [`protocol`].
//!
//! A member may be in several rooms, as a socket.io client may, so `SAY`
//! names its room. The alternative, one current room per member that
//! `SAY` goes to implicitly, would make a line's meaning depend on an
//! earlier command, and a client in two conversations would `JOIN` back
//! and forth (telling the room each time).
//!
//! # Order
//!
//! Everything a room receives (`MSG` and `EVENT`) reaches each of its
//! members, the sender included, in one order: the order in which the
//! server handled the commands. Both implementations get it the same
//! way: one place applies commands one at a time (the hub lock, or the
//! hub task) and, while doing so, puts the line in each member's FIFO
//! queue. See [`threads`] and [`tasks`] for where each serialises.
//!
//! # A member that stops reading
//!
//! Each member has a queue of [`OUTBOX_CAP`] lines between the hub and
//! the writer that owns its socket. When a line is due and the queue is
//! still full after [`SLOW_GRACE`] (a reader that is only late catches up
//! in that time), the member is *dropped*: removed from every room, which
//! is told `EVENT <room> <nick> dropped (not reading)`, and its connection
//! cut.
//! Not taken: blocking until it reads (one member stalls the room, which
//! is what the exercise `chat-slow-member` starts from), or skipping the
//! lines it cannot take (it stays and silently misses messages, so its
//! view of the room is wrong and nobody can tell).
//!
//! # Bad input
//!
//! A line longer than [`MAX_LINE`] bytes gets one `ERR` and the
//! connection is closed; a line that is not UTF-8, or an unknown or
//! malformed command, gets one `ERR` and the connection goes on.
//!
//! # The contract
//!
//! The echo models' contract where it applies: `--addr` (port 0 picks
//! one), the readiness line `listening on <addr>` on stdout,
//! `--max-conns` (a client beyond it gets `ERR server full` and is
//! closed), `--verbose`, exit 2 for bad arguments. On SIGINT or SIGTERM
//! every member gets `INFO server shutting down`, its queue is written
//! (for at most [`CLOSE_GRACE`]) and the server exits 0.

#![warn(missing_docs)]

pub mod hub;
pub mod protocol;
pub mod tasks;
pub mod threads;

use std::io;
use std::net::TcpListener;
use std::time::Duration;

use echo_protocol::{Config, Model};

pub use protocol::{MAX_LINE, OUTBOX_CAP, SLOW_GRACE};

/// The server, as the contract sees it.
pub const MODEL: Model = Model {
    name: "chat",
    expected_limits: &[],
};

/// How long a closing connection's writer may take to write what is still
/// queued (the `OK bye` after `QUIT`, say) before the socket is cut
/// under it: a client that never reads must not keep a thread or a task.
pub const LINGER: Duration = Duration::from_secs(2);

/// How long shutdown waits for the connections to close, below the
/// contract's grace period, after which the process ends regardless.
pub const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// Which implementation serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Impl {
    /// A thread per connection and one per member's writer, the state
    /// under a `parking_lot::Mutex`.
    Threads,
    /// tokio tasks; one hub task owns the state, the others send it events.
    Async,
}

// The chat's own flags. clap makes the doc comment below the program's
// description in `--help`, in place of the contract's echo-server one.
/// A chat server with rooms, over a line protocol: connect with `nc HOST PORT` and type HELP.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Flags {
    /// Implementation: threads sharing state under a lock, or async tasks with channels
    #[arg(long = "impl", value_name = "IMPL", value_enum, default_value_t = Impl::Threads)]
    pub implementation: Impl,
}

/// Serves the chat on `listener` until shutdown is requested.
pub fn serve(listener: TcpListener, config: &Config, flags: Flags) -> io::Result<()> {
    config.log(format_args!("chat: --impl {:?}", flags.implementation));
    match flags.implementation {
        Impl::Threads => threads::serve(listener, config),
        Impl::Async => tasks::serve(listener, config),
    }
}
