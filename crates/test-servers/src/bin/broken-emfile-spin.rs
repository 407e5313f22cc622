//! A level-triggered `poll(2)` echo server that, when `accept` fails with
//! `EMFILE`, just tries again on the next wake-up.
//!
//! The bug: out of descriptors, `accept(2)` fails and leaves the connection
//! in the listen backlog, so the listener stays readable, `poll` returns at
//! once, `accept` fails again: the loop spins at 100 % of a core for as long
//! as the clients stay, serving no one more. This is the most common way
//! event loops meet `EMFILE`: an `Err(e) => { log; continue }` arm. The
//! remedies are a spare descriptor freed to accept-and-close (the epoll
//! model), a back-off, or dropping the listener's interest for a while.
//!
//! Caught by the fault `descriptor-storm` (server CPU while the storm's
//! clients sit idle).
//!
//! Otherwise a plain server: a `poll` set rebuilt on every turn, blocking
//! client sockets read only when `poll` says so, whole echoes written with
//! `write_all` (fine for tests, a stall for slow readers).

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::process::ExitCode;

use echo_protocol::{Config, NoFlags};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use test_servers::model;

fn serve(listener: TcpListener, config: &Config, _: NoFlags) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut clients: HashMap<RawFd, TcpStream> = HashMap::new();
    let mut accepting = true;
    let mut buf = vec![0u8; 16 * 1024];
    while accepting || !clients.is_empty() {
        let fds: Vec<RawFd> = clients.keys().copied().collect();
        let (accept_ready, shutdown_ready, ready) = {
            let mut set = vec![
                PollFd::new(listener.as_fd(), PollFlags::POLLIN),
                PollFd::new(config.shutdown.fd(), PollFlags::POLLIN),
            ];
            set.extend(
                fds.iter()
                    .map(|fd| PollFd::new(clients[fd].as_fd(), PollFlags::POLLIN)),
            );
            if !accepting {
                set[0] = PollFd::new(listener.as_fd(), PollFlags::empty());
                set[1] = PollFd::new(config.shutdown.fd(), PollFlags::empty());
            }
            match poll(&mut set, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let is_ready = |p: &PollFd| p.revents().is_some_and(|r| !r.is_empty());
            let ready: Vec<RawFd> = fds
                .iter()
                .zip(&set[2..])
                .filter(|(_, p)| is_ready(p))
                .map(|(fd, _)| *fd)
                .collect();
            (is_ready(&set[0]), is_ready(&set[1]), ready)
        };
        if shutdown_ready {
            accepting = false;
        }
        if accepting && accept_ready {
            match listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(false).is_ok() {
                        clients.insert(stream.as_raw_fd(), stream);
                    }
                }
                // BUG: EMFILE leaves the connection in the backlog and the
                // listener readable; the next poll returns at once.
                Err(e) => config.log(format_args!("accept: {e}")),
            }
        }
        for fd in ready {
            let stream = clients.get_mut(&fd).expect("polled clients exist");
            let done = match stream.read(&mut buf) {
                Ok(0) => true,
                Ok(n) => stream.write_all(&buf[..n]).is_err(),
                Err(e) if e.kind() == ErrorKind::Interrupted => false,
                Err(_) => true,
            };
            if done {
                let _ = stream.shutdown(Shutdown::Write);
                clients.remove(&fd);
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    echo_protocol::run(&model("broken-emfile-spin"), serve)
}
