//! Reference solution of `busy-poll-idle`: a visit moved something only if
//! the kernel gave or took bytes.
//!
//! `read_from` returns `Ok(Read::WouldBlock)` when the socket had nothing
//! (the kernel said `EAGAIN`), and `flush_to` returns how many bytes it
//! wrote, 0 when the client's socket buffer was full. Both are `Ok`: a call
//! that did not fail is not a call that did something. The first bug made
//! every silent client look busy; the second makes a client that stopped
//! reading its echo look busy, so the server spins for as long as that
//! client sulks.

use std::io;

use echo_protocol::nonblocking::Read;

use crate::Conn;

/// One visit to one connection, ready or not. Returns whether anything
/// moved; an error (a reset) closes the connection.
pub(crate) fn visit(conn: &mut Conn, scratch: &mut [u8]) -> io::Result<bool> {
    let mut moved = false;
    if conn.echo.wants_read() {
        moved |= conn.echo.read_from(&mut conn.stream, scratch)? != Read::WouldBlock;
    }
    if conn.echo.wants_write() {
        moved |= conn.echo.flush_to(&mut conn.stream)? > 0;
    }
    Ok(moved)
}
