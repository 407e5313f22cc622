//! The two hand-offs that need more than one shared listener: a
//! `SO_REUSEPORT` group (a listener per worker) and descriptor passing over
//! a Unix socket pair (`SCM_RIGHTS`). `shared-accept` needs nothing here:
//! its workers inherit the contract's listener across `fork`.
//!
//! # Syscalls
//!
//! `setsockopt(SO_REUSEADDR, SO_REUSEPORT)`, `socket(2)`, `bind(2)`,
//! `listen(2)` for the group; `sendmsg(2)` and `recvmsg(2)` with an
//! `SCM_RIGHTS` control message (and `MSG_CMSG_CLOEXEC`) for passing.
//!
//! # Trade-offs
//!
//! `reuseport` gives each worker its own accept queue, chosen by a hash of
//! the connection's addresses: no wait queue shared by the workers, but no
//! look at who is busy either. Passing a descriptor lets the parent pick an
//! idle worker, for one `sendmsg` and one `recvmsg` per connection and a
//! parent on the path of every connection.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use echo_protocol::LISTEN_BACKLOG;
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

// ANCHOR: reuseport
/// The contract bound one socket, without `SO_REUSEPORT`, and has already
/// announced its port. Rather than closing it and binding N new ones (a
/// window in which the announced port refuses connections, or is taken by
/// someone else), the contract's socket joins the group as slot 0: Linux
/// forms a reuseport group when a socket with the option *listens* and
/// finds listeners on the port that have it, so setting it late on the
/// first socket is enough. (socket(7) asks for the option before `bind`;
/// on a kernel that refuses, the `bind` below fails with a clear error.)
pub(crate) fn reuseport_group(
    first: TcpListener,
    addr: SocketAddr,
    n: usize,
) -> io::Result<Vec<TcpListener>> {
    SockRef::from(&first).set_reuse_port(true)?;
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

// ANCHOR: scm-rights
/// Sends one byte carrying `fd` as `SCM_RIGHTS`: the kernel installs a new
/// descriptor for the same socket in the receiver.
pub(crate) fn send_fd(chan: &UnixStream, fd: RawFd) -> io::Result<()> {
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(&[0])];
    sendmsg::<()>(chan.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None)?;
    Ok(())
}

/// Receives one byte and the descriptor it carries; `None` at EOF (the
/// parent closed its end).
pub(crate) fn receive_fd(chan: &UnixStream) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!(RawFd);
    let msg = recvmsg::<()>(
        chan.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    if msg.bytes == 0 {
        return Ok(None);
    }
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel just installed `fd` in this process
                // for us; nothing else owns it.
                return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
    }
    Err(io::Error::other("a hand-off message without a descriptor"))
}
// ANCHOR_END: scm-rights
