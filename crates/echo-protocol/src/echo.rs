//! The echo protocol for one blocking socket.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};

// ANCHOR: echo
/// Echoes `stream` until the client half-closes, then half-closes our side
/// so the client reads EOF right after the last echoed byte. `buf` is the
/// caller's, so a model decides how much memory a connection costs. Returns
/// the number of bytes echoed.
///
/// The socket must be in blocking mode: this is the loop a blocking model
/// runs per connection; readiness-based models write their own state
/// machine instead.
pub fn echo_until_eof(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        // `read` returns as soon as *some* bytes are there: TCP is a stream,
        // so what arrives is not the client's writes, just bytes in order.
        let n = match stream.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // `write_all` loops over partial writes. It blocks while the client
        // is not reading, and so stops us reading from it: back-pressure
        // for free. It is also why, in a model with one thread for all
        // clients, one slow reader stalls everybody.
        stream.write_all(&buf[..n])?;
        total += n as u64;
    }
    stream.shutdown(Shutdown::Write)?;
    Ok(total)
}
// ANCHOR_END: echo

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn echoes_every_byte_then_eof() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 7]; // smaller than the message: many reads
            echo_until_eof(&mut s, &mut buf).unwrap()
        });
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let msg: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let mut writer = c.try_clone().unwrap();
        let sent = msg.clone();
        let w = thread::spawn(move || {
            writer.write_all(&sent).unwrap();
            writer.shutdown(Shutdown::Write).unwrap();
        });
        let mut echoed = Vec::new();
        c.read_to_end(&mut echoed).unwrap();
        w.join().unwrap();
        assert_eq!(echoed, msg);
        assert_eq!(server.join().unwrap(), msg.len() as u64);
    }
}
