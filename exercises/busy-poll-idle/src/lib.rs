//! Exercise `busy-poll-idle`: a busy-poll loop may pause only after a
//! sweep in which nothing moved, so it must know when nothing did.
//!
//! Edit `src/starter.rs` (the function `visit`); grade with `just exercise
//! busy-poll-idle`. The `solution` feature builds `src/solution.rs`
//! instead. The loop below is `echo-busy-poll`'s, kept short: read it, do
//! not change it.
//!
//! Syscalls: `accept4(2)`, `read(2)`, `write(2)` on non-blocking sockets,
//! `clock_nanosleep(2)` (what `thread::sleep` calls) for the pause; nothing that waits for readiness.

#![warn(missing_docs)]

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

use clap::Args;
use echo_protocol::nonblocking::{Accepted, Echo, READ_CHUNK, Spare, accept_one};
use echo_protocol::{Config, Model};

#[cfg(not(feature = "solution"))]
#[path = "starter.rs"]
mod imp;
#[cfg(feature = "solution")]
#[path = "solution.rs"]
mod imp;

/// No expected limits: one thread, but it never blocks on a client.
pub const MODEL: Model = Model {
    name: "ex-busy-poll-idle",
    expected_limits: &[],
};

/// The exercise's one flag.
#[derive(Debug, Clone, Args)]
pub struct Flags {
    /// Microseconds to sleep after a sweep in which nothing moved (0: spin)
    #[arg(long, default_value_t = 1000, value_name = "N",
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub idle_sleep_us: u32,
}

/// One client: its non-blocking socket and its unsent echo.
struct Conn {
    stream: TcpStream,
    echo: Echo,
}

/// Sweeps the listener and every client until shutdown is requested and
/// the open connections have finished; pauses after idle sweeps.
pub fn serve(listener: TcpListener, config: &Config, flags: Flags) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut listener = Some(listener);
    let mut spare = Spare::new()?;
    let mut conns: Vec<Conn> = Vec::new();
    let mut scratch = vec![0; READ_CHUNK];
    let pause = Duration::from_micros(flags.idle_sleep_us.into());
    while listener.is_some() || !conns.is_empty() {
        if config.shutdown.requested() {
            listener = None;
        }
        let mut moved = match &listener {
            Some(l) => accept_some(l, &mut spare, &mut conns, config),
            None => false,
        };
        conns.retain_mut(|conn| match imp::visit(conn, &mut scratch) {
            Ok(m) if !conn.echo.done() => {
                moved |= m;
                true
            }
            Ok(_) => {
                moved = true;
                let _ = conn.stream.shutdown(Shutdown::Write);
                false
            }
            Err(e) => {
                config.log(format_args!("client: {e}"));
                moved = true;
                false
            }
        });
        if !moved && !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    Ok(())
}

/// Up to 64 accepts (a burst of connects need not take a sweep each);
/// returns whether any connection was taken from the backlog.
fn accept_some(l: &TcpListener, spare: &mut Spare, conns: &mut Vec<Conn>, config: &Config) -> bool {
    let mut took = false;
    for _ in 0..64 {
        match accept_one(l, spare) {
            Accepted::Client(stream, peer) => {
                took = true;
                if conns.len() >= config.max_conns || stream.set_nonblocking(true).is_err() {
                    config.log(format_args!("{peer}: refused"));
                    continue;
                }
                conns.push(Conn {
                    stream,
                    echo: Echo::new(),
                });
            }
            Accepted::Skipped(e) => {
                took = true;
                config.log(format_args!("accept: {e}"));
            }
            Accepted::Empty | Accepted::Later(_) => break,
        }
    }
    took
}
