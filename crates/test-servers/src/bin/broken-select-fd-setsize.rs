//! `broken-select-fd-setsize`: a `select(2)` echo server that dies when a
//! descriptor number reaches 1024.
//!
//! The bug, as it looks in real code: every connection is put in an
//! `fd_set`, which is a bitmap of `FD_SETSIZE` (1024) bits. In C,
//! `FD_SET(1030, &set)` writes past the end of the bitmap and corrupts the
//! stack; nix's `FdSet::insert` checks the bound and panics instead, which
//! kills the process. Nothing limits the number of connections to what
//! `select` can watch. Correct: refuse (close) a connection whose
//! descriptor is `FD_SETSIZE` or more, or use `poll`/`epoll`.
//!
//! Caught by `beyond-fd-setsize`: it holds 1,100 connections, the server
//! panics on the first descriptor past 1023, and the fresh client after
//! them finds nobody listening. The other cases stay below 1024
//! descriptors (`idle-500`, the most, holds 500), so they all pass.
//!
//! Syscalls: `select(2)`, non-blocking `accept4(2)`, `read(2)`, `write(2)`.

use std::io;
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::process::ExitCode;

use echo_protocol::{Config, NoFlags};
use nix::sys::select::{FdSet, select};
use test_servers::model;
use test_servers::poll_loop::{Conn, OUTPUT_CAP, accept_all};

fn main() -> ExitCode {
    echo_protocol::run(&model("broken-select-fd-setsize"), serve)
}

/// `poll_loop`'s turn, with `select` for `poll`: the loop is written out
/// here because the bug is in building its sets.
fn serve(listener: TcpListener, config: &Config, _: NoFlags) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut conns: Vec<Conn> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (readable, writable): (Vec<bool>, Vec<bool>) = {
            let mut rd = FdSet::new();
            let mut wr = FdSet::new();
            rd.insert(listener.as_fd());
            for c in &conns {
                // THE BUG: no check against FD_SETSIZE; at descriptor 1024
                // this panics (in C it would scribble past the bitmap).
                if !c.eof && c.out.len() < OUTPUT_CAP {
                    rd.insert(c.stream.as_fd());
                }
                if !c.out.is_empty() {
                    wr.insert(c.stream.as_fd());
                }
            }
            match select(None, &mut rd, &mut wr, None, None) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            let r = std::iter::once(rd.contains(listener.as_fd()))
                .chain(conns.iter().map(|c| rd.contains(c.stream.as_fd())))
                .collect();
            let w = conns
                .iter()
                .map(|c| wr.contains(c.stream.as_fd()))
                .collect();
            (r, w)
        };
        let mut i = 0;
        conns.retain_mut(|c| {
            let ready = readable[i + 1] || writable[i];
            i += 1;
            // A connection's error closes that connection only.
            !ready || c.echo_ready(&mut buf).unwrap_or(false)
        });
        if readable[0] && !accept_all(&listener, config, &mut conns)? {
            return Ok(());
        }
    }
}
