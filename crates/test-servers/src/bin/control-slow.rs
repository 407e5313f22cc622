//! `control-slow`: a correct echo server that is slow on purpose, reading
//! and writing a few bytes at a time.
//!
//! The control of the broken-server set: if the suite failed it, the suite
//! would be asserting speed, or a particular pattern of reads and writes,
//! instead of the echo protocol. It is a thread per client (so it has no
//! expected limit), each thread reading 1 to 64 bytes per `read(2)` and
//! writing what it read in pieces of 1 to 64 bytes per `write(2)`, sizes
//! drawn from a per-connection xorshift so reads and writes are uneven and
//! misaligned with each other and with the client's messages.
//!
//! Why 1 to 64 and not one byte per call: `interleaved` alone moves 32 MiB,
//! which at one byte per call is 64 million syscalls, minutes on two
//! cores; 32 bytes on average keeps the whole suite at a few seconds of
//! extra syscalls while every message of more than 64 bytes still arrives
//! in several reads and leaves in several writes.
//!
//! Syscalls: `accept(2)`, `clone(2)`, blocking `read(2)`, `write(2)`,
//! `shutdown(2)`.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread;

use echo_protocol::{Config, NoFlags};
use test_servers::{model, next_client};

/// Largest read or write.
const MAX_PIECE: u64 = 64;

fn main() -> ExitCode {
    echo_protocol::run(&model("control-slow"), serve)
}

fn serve(listener: TcpListener, config: &Config, _: NoFlags) -> io::Result<()> {
    let mut seed = 0x5eed_u64;
    while let Some(stream) = next_client(&listener, config)? {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        // Small stacks: beyond-fd-setsize holds 1,100 of these threads.
        let spawned = thread::Builder::new().stack_size(64 * 1024).spawn(move || {
            let _ = client(stream, seed);
        });
        if let Err(e) = spawned {
            eprintln!("control-slow: cannot spawn a client thread: {e}");
        }
    }
    Ok(())
}

fn client(mut s: TcpStream, seed: u64) -> io::Result<()> {
    let mut rng = seed | 1;
    let mut piece = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (1 + rng % MAX_PIECE) as usize
    };
    let mut buf = [0u8; MAX_PIECE as usize];
    loop {
        let want = piece();
        let n = match s.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut off = 0;
        while off < n {
            let end = (off + piece()).min(n);
            match s.write(&buf[off..end]) {
                Ok(k) => off += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    s.shutdown(Shutdown::Write)
}
