#![cfg(feature = "grade")]
//! Grading of `chat-slow-member`: the chat still works (a room, its
//! order, `QUIT`), and a member that stops reading no longer stalls the
//! room: a talker and a listener keep talking, in turn, until the
//! listener is told the slow member was dropped; the listener misses
//! nothing, and the slow member's connection is closed.
//!
//! Only built with `--features grade`, so a plain `cargo test --workspace`
//! does not grade the unsolved starter.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use echo_conformance::ServerProcess;

const BIN: &str = env!("CARGO_BIN_EXE_ex-chat-slow-member");
/// The longest a reader waits for one line: far beyond `SLOW_GRACE`, so a
/// line that does not come within it is a stalled room.
const LINE_WITHIN: Duration = Duration::from_secs(5);

struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn over(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(LINE_WITHIN)).unwrap();
        let writer = stream.try_clone().unwrap();
        let mut c = Client {
            reader: BufReader::new(stream),
            writer,
        };
        let hello = c.line().expect("no greeting");
        assert!(hello.starts_with("INFO welcome"), "greeting: {hello:?}");
        c
    }

    fn named(server: &ServerProcess, nick: &str, room: &str) -> Client {
        let mut c = Client::over(server.client());
        c.send(&format!("NICK {nick}"));
        c.skip_to(&format!("OK nick {nick}"));
        c.send(&format!("JOIN {room}"));
        c.skip_to(&format!("OK join {room}"));
        c
    }

    fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .expect("send");
    }

    /// The next line, or `None` on EOF or after `LINE_WITHIN`.
    fn line(&mut self) -> Option<String> {
        let mut s = String::new();
        match self.reader.read_line(&mut s) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(s.trim_end_matches('\n').to_owned()),
        }
    }

    fn skip_to(&mut self, want: &str) -> Vec<String> {
        let mut skipped = Vec::new();
        loop {
            match self.line() {
                Some(l) if l == want => return skipped,
                Some(l) => skipped.push(l),
                None => panic!("no line {want:?} within {LINE_WITHIN:?} (after {skipped:?})"),
            }
        }
    }
}

#[test]
fn a_room_works_in_order() {
    let server = ServerProcess::spawn(Path::new(BIN), &[]).expect("spawn");
    let mut ann = Client::named(&server, "ann", "r");
    let mut bob = Client::named(&server, "bob", "r");
    ann.skip_to("EVENT r bob joined");
    for i in 0..20 {
        ann.send(&format!("SAY r line {i}"));
    }
    for i in 0..20 {
        bob.skip_to(&format!("MSG r ann line {i}"));
    }
    bob.send("QUIT");
    bob.skip_to("OK bye");
    assert_eq!(
        bob.line(),
        None,
        "the server kept the connection after QUIT"
    );
    ann.skip_to("EVENT r bob left");
}

#[test]
fn a_slow_member_does_not_stall_the_room() {
    let server = ServerProcess::spawn(Path::new(BIN), &[]).expect("spawn");
    let talker = Client::named(&server, "talker", "r");
    let mut listener = Client::named(&server, "listener", "r");
    // A small receive buffer, set before connecting, so that the kernel
    // holds little for the slow member and its queue fills soon.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect_timeout(&server.addr().into(), Duration::from_secs(5))
        .expect("connect");
    let mut slow = Client::over(sock.into());
    slow.send("NICK slow");
    slow.skip_to("OK nick slow");
    slow.send("JOIN r");
    slow.skip_to("OK join r");
    listener.skip_to("EVENT r slow joined");
    // From here on, `slow` reads nothing.

    let notice = "EVENT r slow dropped (not reading)";
    let dropped = Arc::new(AtomicBool::new(false));
    let stop = Arc::clone(&dropped);
    // The talker says a line, waits for it to come back, says the next.
    let talk = thread::spawn(move || {
        let mut talker = talker;
        let pad = "x".repeat(900);
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut sent = 0usize;
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            talker.send(&format!("SAY r {sent} {pad}"));
            let echo = format!("MSG r talker {sent} {pad}");
            loop {
                match talker.line() {
                    Some(l) if l == echo => break,
                    Some(_) => {}
                    None => return Err(sent),
                }
            }
            sent += 1;
        }
        Ok((talker, sent))
    });
    let mut got = Vec::new();
    loop {
        match listener.line() {
            Some(l) if l == notice => break,
            Some(l) => {
                if let Some(rest) = l.strip_prefix("MSG r talker ") {
                    got.push(rest.split(' ').next().unwrap().parse::<usize>().unwrap());
                }
            }
            None => panic!(
                "the room stalled: after {} messages the listener got no line for {LINE_WITHIN:?}, \
                 and no notice that the member who stopped reading was dropped",
                got.len()
            ),
        }
    }
    dropped.store(true, Ordering::SeqCst);
    let (mut talker, sent) = match talk.join().unwrap() {
        Ok(done) => done,
        Err(n) => panic!("the talker's message {n} never came back to it"),
    };
    talker.send("SAY r after");
    for l in listener.skip_to("MSG r talker after") {
        if let Some(rest) = l.strip_prefix("MSG r talker ") {
            got.push(rest.split(' ').next().unwrap().parse::<usize>().unwrap());
        }
    }
    let all: Vec<usize> = (0..sent).collect();
    assert_eq!(got, all, "the listener lost or reordered messages");

    // The slow member's connection is closed: what was queued, then EOF.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 64 * 1024];
    loop {
        assert!(
            Instant::now() < deadline,
            "the dropped member's connection stayed open"
        );
        match slow.reader.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
            Err(e) => panic!("reading the dropped member's socket: {e}"),
        }
    }
}
