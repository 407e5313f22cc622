#![cfg(feature = "grade")]
//! Grading of `io-uring-buffer-ownership`: the conformance cases that move
//! more than one buffer per connection (a 1 MiB upload, a thousand
//! pipelined messages, half-closed conversations of megabytes, clients
//! interleaving chunks), plus clients that each send 8 MiB before reading
//! a byte, so that sends stall on full socket buffers while the client's
//! next bytes wait: every byte must come back, in order.
//!
//! Only built with `--features grade`, so a plain `cargo test --workspace`
//! does not grade the unsolved starter.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use echo_conformance::{ServerProcess, run_suite};

const BIN: &str = env!("CARGO_BIN_EXE_ex-io-uring-buffer-ownership");
const CASES: &[&str] = &["large-1mib", "pipelined-1000", "half-close", "interleaved"];
const TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn echoes_more_than_one_buffer() {
    let server = ServerProcess::spawn(Path::new(BIN), &[]).unwrap_or_else(|e| panic!("{e}"));
    let only: Vec<String> = CASES.iter().map(|c| c.to_string()).collect();
    let report = run_suite(&server.target(), &[], Some(&only), &mut |o| {
        eprintln!("{o}")
    });
    let _ = server.terminate();
    let report = report.unwrap_or_else(|e| panic!("the suite could not run: {e}"));
    assert!(report.ok(), "some echo came back wrong:\n{report}");
    assert_eq!(report.outcomes.len(), CASES.len(), "{report}");
}

/// The byte at offset `i` of client `c`'s stream.
fn pattern(c: usize, i: usize) -> u8 {
    ((i * 7 + c) % 251) as u8
}

/// Each client writes `TOTAL` bytes and starts reading only when it has
/// written them all, or when a write made no progress for 300 ms (a
/// correct server stops receiving once its send stalls on the client's
/// full socket). Meanwhile the server's sends stall with the client's next
/// bytes already waiting to be received.
#[test]
fn every_byte_of_uploads_sent_before_reading() {
    const TOTAL: usize = 8 * 1024 * 1024;
    const CHUNK: usize = 64 * 1024;
    let server = ServerProcess::spawn(Path::new(BIN), &[]).unwrap_or_else(|e| panic!("{e}"));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let mut reader = TcpStream::connect_timeout(&server.addr(), TIMEOUT).expect("connect");
            reader.set_read_timeout(Some(TIMEOUT)).unwrap();
            let mut writer = reader.try_clone().unwrap();
            writer
                .set_write_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let (start_reading, reading) = mpsc::channel();
            let sender = thread::spawn(move || {
                let data: Vec<u8> = (0..TOTAL).map(|i| pattern(c, i)).collect();
                let mut sent = 0;
                while sent < TOTAL {
                    match writer.write(&data[sent..TOTAL.min(sent + CHUNK)]) {
                        Ok(n) => sent += n,
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                        {
                            let _ = start_reading.send(());
                        }
                        Err(e) => panic!("client {c}: write after {sent} bytes: {e}"),
                    }
                }
                writer.shutdown(Shutdown::Write).expect("half-close");
                let _ = start_reading.send(());
            });
            thread::spawn(move || {
                reading
                    .recv_timeout(Duration::from_secs(60))
                    .expect("the writer neither finished nor stalled");
                let mut back = Vec::with_capacity(TOTAL);
                let read = reader.read_to_end(&mut back);
                sender.join().unwrap();
                if let Err(e) = read {
                    panic!(
                        "client {c}: {} of {TOTAL} bytes back, then: {e}",
                        back.len()
                    );
                }
                assert_eq!(back.len(), TOTAL, "client {c}: bytes back");
                if let Some(i) = (0..TOTAL).find(|&i| back[i] != pattern(c, i)) {
                    panic!("client {c}: byte {i} is not the byte sent there");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client's echo was wrong");
    }
    let status = server.terminate().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "exit after SIGTERM: {status}");
}
