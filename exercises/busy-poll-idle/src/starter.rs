//! TASK: make this busy-poll loop pause when nothing moved, not just when it has no clients.
//!
//! The loop in `lib.rs` visits every connection on every sweep, without
//! asking the kernel which ones are ready, and sleeps `--idle-sleep-us`
//! after a sweep in which nothing moved: that pause is all that stands
//! between an idle server and a core spent at 100 %. `visit` below tells
//! the loop whether anything moved. It was written as "I did some I/O, so
//! I made progress", and the server seemed fine: with no client it sleeps
//! as it should. Connect one `nc` and leave it silent, and `top` shows the
//! server at 100 % of a core, because a visit to a silent client still
//! "does I/O".
//!
//! Fix `visit` so that it returns `true` only when bytes (or the client's
//! EOF) came in, or bytes went out. Keep the rest as it is: one read per
//! visit and only while `wants_read` (back-pressure), a flush only while
//! `wants_write`.
//!
//! Edit this file only. Grade with `just exercise busy-poll-idle` (or
//! `bash scripts/exercise.sh busy-poll-idle`).
//!
//! Syscalls: `read(2)` and `write(2)` on non-blocking sockets, which answer
//! `EAGAIN` when there is nothing to read or no room to write.

use std::io;

use crate::Conn;

/// One visit to one connection, ready or not. Returns whether anything
/// moved; an error (a reset) closes the connection.
pub(crate) fn visit(conn: &mut Conn, scratch: &mut [u8]) -> io::Result<bool> {
    let mut moved = false;
    if conn.echo.wants_read() {
        conn.echo.read_from(&mut conn.stream, scratch)?;
        moved = true;
    }
    if conn.echo.wants_write() {
        conn.echo.flush_to(&mut conn.stream)?;
        moved = true;
    }
    Ok(moved)
}
