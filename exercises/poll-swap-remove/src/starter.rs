//! TASK: find why clients stall when others leave, and fix it.
//!
//! `serve` is a one-thread `poll(2)` echo server. It keeps two vectors in
//! the same order: `fds`, the `pollfd` array handed to `poll` (the
//! listener, the shutdown eventfd, then one entry per client), and
//! `clients`, each client's socket and pending echo. With one client at a
//! time it works. Now start it with `cargo run -p ex-poll-swap-remove`,
//! connect three `nc 127.0.0.1 7000`, close the first, and type into the
//! other two: one of them may get no echo at all, and `top` may show the
//! server at 100 % of a core while nobody types.
//!
//! Find what goes out of step when a client leaves, and fix it so that
//! every client is served to the end whoever leaves before it. Edit this
//! file only. Grade with `just exercise poll-swap-remove` (or
//! `bash scripts/exercise.sh poll-swap-remove`).
//!
//! Syscalls: `poll(2)` over the whole array each round, `accept4(2)`,
//! `read(2)`, `write(2)` and `shutdown(2)` on non-blocking sockets.

use std::io::{self, ErrorKind};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use echo_protocol::nonblocking::{Accepted, Echo, READ_CHUNK, Spare, accept_one};
use echo_protocol::{Config, NoFlags};
use libc::{POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, c_short, pollfd};

/// `fds[0]` watches the listener and `fds[1]` the shutdown eventfd; client
/// `i` is watched by `fds[CLIENTS + i]`.
const CLIENTS: usize = 2;

/// One client: its socket and the echo it owes.
struct Client {
    stream: TcpStream,
    echo: Echo,
}

impl Client {
    /// Moves what `revents` allows; false once the client is finished
    /// (echoed and closed) or broken (reset, error).
    fn ready(&mut self, revents: c_short, scratch: &mut [u8]) -> bool {
        if revents & (POLLERR | POLLHUP | POLLNVAL) != 0 {
            return false;
        }
        if revents & POLLIN != 0 && self.echo.read_from(&mut self.stream, scratch).is_err() {
            return false;
        }
        if self.echo.flush_to(&mut self.stream).is_err() {
            return false;
        }
        if self.echo.done() {
            let _ = self.stream.shutdown(Shutdown::Write);
            return false;
        }
        true
    }

    /// `POLLIN` while it may send more, `POLLOUT` while output waits.
    fn events(&self) -> c_short {
        let read = if self.echo.wants_read() { POLLIN } else { 0 };
        let write = if self.echo.wants_write() { POLLOUT } else { 0 };
        read | write
    }
}

fn watch(fd: i32, events: c_short) -> pollfd {
    pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// Serves every client from one thread until shutdown is requested and the
/// open clients have finished.
pub fn serve(listener: TcpListener, config: &Config, _flags: NoFlags) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut fds = vec![
        watch(listener.as_raw_fd(), POLLIN),
        watch(config.shutdown.fd().as_raw_fd(), POLLIN),
    ];
    let mut listener = Some(listener);
    let mut spare = Spare::new()?;
    let mut clients: Vec<Client> = Vec::new();
    let mut scratch = vec![0; READ_CHUNK];

    while listener.is_some() || !clients.is_empty() {
        // SAFETY: `fds` is a live, exclusively borrowed Vec of libc's
        // `#[repr(C)]` pollfd, and we pass its true length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }

        let mut i = 0;
        while i < clients.len() {
            let revents = fds[CLIENTS + i].revents;
            if revents == 0 {
                i += 1;
                continue;
            }
            if clients[i].ready(revents, &mut scratch) {
                fds[CLIENTS + i].events = clients[i].events();
                i += 1;
                continue;
            }
            // The client leaves. Its pollfd goes by swap-remove: O(1), and
            // poll does not care in which order the entries come. The
            // client goes by remove, which keeps the clients in the order
            // they arrived.
            fds.swap_remove(CLIENTS + i);
            clients.remove(i);
            // Stay at i: it now holds another client.
        }

        if fds[1].revents != 0 {
            // Stop accepting; a negative descriptor makes poll skip a slot.
            listener = None;
            fds[0].fd = -1;
            fds[1].fd = -1;
        } else if fds[0].revents != 0 {
            if let Some(l) = &listener {
                accept_some(l, &mut spare, &mut fds, &mut clients, config);
            }
        }
    }
    Ok(())
}

/// Accepts up to 64 clients, appending each to both vectors.
fn accept_some(
    listener: &TcpListener,
    spare: &mut Spare,
    fds: &mut Vec<pollfd>,
    clients: &mut Vec<Client>,
    config: &Config,
) {
    for _ in 0..64 {
        let stream = match accept_one(listener, spare) {
            Accepted::Client(stream, _) => stream,
            Accepted::Empty | Accepted::Later(_) => return,
            Accepted::Skipped(_) => continue,
        };
        if clients.len() >= config.max_conns || stream.set_nonblocking(true).is_err() {
            continue;
        }
        let client = Client {
            stream,
            echo: Echo::new(),
        };
        fds.push(watch(client.stream.as_raw_fd(), client.events()));
        clients.push(client);
    }
}
