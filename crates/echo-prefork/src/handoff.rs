//! The two hand-offs that need more than one shared listener: a
//! `SO_REUSEPORT` group (a listener per worker, built by
//! `echo_protocol::reuseport_group`, which `echo-epoll --threads` shares)
//! and descriptor passing over a Unix socket pair (`SCM_RIGHTS`), here.
//! `shared-accept` needs nothing: its workers inherit the contract's
//! listener across `fork`.
//!
//! # Syscalls
//!
//! `sendmsg(2)` and `recvmsg(2)` with an `SCM_RIGHTS` control message (and
//! `MSG_CMSG_CLOEXEC`) for passing; see `reuseport_group` for the group.
//!
//! # Trade-offs
//!
//! `reuseport` gives each worker its own accept queue, chosen by a hash of
//! the connection's addresses: no wait queue shared by the workers, but no
//! look at who is busy either. Passing a descriptor lets the parent pick an
//! idle worker, for one `sendmsg` and one `recvmsg` per connection and a
//! parent on the path of every connection.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

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
