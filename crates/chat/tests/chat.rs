//! Black-box tests of the `chat` binary over real sockets, each run once
//! per implementation (`--impl threads` and `--impl async`): rooms, order
//! and isolation, the slow member, bad input, the commands, the limits
//! and shutdown. Every read has a timeout (5 s, `ServerProcess::client`)
//! and every loop a deadline.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use chat::MAX_LINE;
use echo_conformance::{ServerProcess, tree};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_chat"))
}

fn start(imp: &str, extra: &[&str]) -> ServerProcess {
    let mut args = vec!["--impl", imp];
    args.extend_from_slice(extra);
    ServerProcess::spawn(bin(), &args).expect("spawn chat")
}

/// One chat client: lines in, lines out.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn over(stream: TcpStream) -> Client {
        let writer = stream.try_clone().expect("clone");
        let mut c = Client {
            reader: BufReader::new(stream),
            writer,
        };
        let hello = c.line();
        assert!(hello.starts_with("INFO welcome"), "greeting: {hello:?}");
        c
    }

    /// Connected, named `nick`, and in each of `rooms`.
    fn named(server: &ServerProcess, nick: &str, rooms: &[&str]) -> Client {
        let mut c = Client::over(server.client());
        c.send(&format!("NICK {nick}"));
        c.expect(&format!("OK nick {nick}"));
        for room in rooms {
            c.send(&format!("JOIN {room}"));
            c.skip_to(&format!("OK join {room}"));
        }
        c
    }

    fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .expect("send");
    }

    /// The next line, without its `\n`; panics on EOF or timeout.
    fn line(&mut self) -> String {
        let mut s = String::new();
        match self.reader.read_line(&mut s) {
            Ok(0) => panic!("EOF where a line was expected"),
            Ok(_) => s.trim_end_matches('\n').to_owned(),
            Err(e) => panic!("no line within the timeout: {e}"),
        }
    }

    fn expect(&mut self, want: &str) {
        assert_eq!(self.line(), want);
    }

    /// Reads up to and including `want`, returning the lines skipped.
    fn skip_to(&mut self, want: &str) -> Vec<String> {
        let mut skipped = Vec::new();
        loop {
            let l = self.line();
            if l == want {
                return skipped;
            }
            assert!(skipped.len() < 10_000, "never saw {want:?}");
            skipped.push(l);
        }
    }

    /// Reads until the server closes: EOF, or a reset (the server closed
    /// with bytes of ours unread). Panics if it stays open for `within`.
    fn expect_closed(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 64 * 1024];
        while Instant::now() < deadline {
            match self.reader.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
                Err(e) => panic!("reading until close: {e}"),
            }
        }
        panic!("the server did not close the connection within {within:?}");
    }
}

/// Reads lines until `count` `MSG` lines have come, returning those.
fn collect_msgs(mut c: Client, count: usize) -> (Client, Vec<String>) {
    let mut msgs = Vec::with_capacity(count);
    while msgs.len() < count {
        let l = c.line();
        if l.starts_with("MSG ") {
            msgs.push(l);
        }
    }
    (c, msgs)
}

/// Each test body once per implementation.
macro_rules! both_impls {
    ($($test:ident),* $(,)?) => {
        mod threads {
            $( #[test] fn $test() { super::$test("threads") } )*
        }
        mod async_tasks {
            $( #[test] fn $test() { super::$test("async") } )*
        }
    };
}

both_impls!(
    rooms_are_ordered_and_isolated,
    slow_member_is_dropped_and_room_goes_on,
    overlong_line_gets_one_error_then_close,
    bad_lines_get_one_error_and_connection_stays,
    commands_reply_as_documented,
    max_conns_is_enforced,
    sigterm_tells_members_and_exits_0,
    departures_leave_nothing_behind_and_idle_costs_no_cpu,
);

const PER_TALKER: usize = 200;

/// Two rooms, two talkers in `red` and one in `blue`, sending at once,
/// and a member in both: every member of a room sees the room's messages
/// in one and the same order, each talker's in the order sent, and
/// nothing from the other room.
fn rooms_are_ordered_and_isolated(imp: &str) {
    let server = start(imp, &[]);
    let ann = Client::named(&server, "ann", &["red"]);
    let bob = Client::named(&server, "bob", &["red"]);
    let cat = Client::named(&server, "cat", &["blue"]);
    let dan = Client::named(&server, "dan", &["blue"]);
    let eve = Client::named(&server, "eve", &["red", "blue"]);

    // The talkers write from threads of their own while every client's
    // lines are read on another, so that no one's queue fills.
    let talk = |c: &Client, room: &'static str, who: &'static str| {
        let mut w = c.writer.try_clone().expect("clone");
        thread::spawn(move || {
            for i in 0..PER_TALKER {
                w.write_all(format!("SAY {room} {who}-{i}\n").as_bytes())
                    .expect("talk");
            }
        })
    };
    let talkers = [
        talk(&ann, "red", "a"),
        talk(&bob, "red", "b"),
        talk(&cat, "blue", "c"),
    ];
    let reds = 2 * PER_TALKER;
    let blues = PER_TALKER;
    let readers: Vec<_> = [
        (ann, reds),
        (bob, reds),
        (cat, blues),
        (dan, blues),
        (eve, reds + blues),
    ]
    .into_iter()
    .map(|(c, n)| thread::spawn(move || collect_msgs(c, n)))
    .collect();
    for t in talkers {
        t.join().expect("talker");
    }
    let mut seen: Vec<(Client, Vec<String>)> = readers
        .into_iter()
        .map(|r| r.join().expect("reader"))
        .collect();

    let only = |msgs: &[String], room: &str| -> Vec<String> {
        let prefix = format!("MSG {room} ");
        msgs.iter()
            .filter(|m| m.starts_with(&prefix))
            .cloned()
            .collect()
    };
    let red_order = seen[0].1.clone();
    assert_eq!(
        only(&red_order, "red").len(),
        reds,
        "ann got a blue message"
    );
    assert_eq!(
        seen[1].1, red_order,
        "bob saw red in another order than ann"
    );
    assert_eq!(
        only(&seen[4].1, "red"),
        red_order,
        "eve saw red in another order"
    );
    let blue_order = seen[2].1.clone();
    assert_eq!(
        only(&blue_order, "blue").len(),
        blues,
        "cat got a red message"
    );
    assert_eq!(
        seen[3].1, blue_order,
        "dan saw blue in another order than cat"
    );
    assert_eq!(
        only(&seen[4].1, "blue"),
        blue_order,
        "eve saw blue in another order"
    );
    // Each talker's own messages in the order sent.
    for (nick, tag, order) in [
        ("ann", "a", &red_order),
        ("bob", "b", &red_order),
        ("cat", "c", &blue_order),
    ] {
        let mine: Vec<&String> = order
            .iter()
            .filter(|m| m.contains(&format!(" {nick} ")))
            .collect();
        let want: Vec<String> = (0..PER_TALKER).map(|i| format!("{tag}-{i}")).collect();
        let got: Vec<&str> = mine.iter().map(|m| m.rsplit(' ').next().unwrap()).collect();
        assert_eq!(got, want, "{nick}'s messages out of order");
    }
    // Every blue message was delivered (dan has them all), so one arriving
    // at ann now would come before her own last word.
    let (ann, _) = &mut seen[0];
    ann.send("SAY red end");
    let between = ann.skip_to("MSG red ann end");
    assert!(
        between.iter().all(|l| !l.starts_with("MSG blue")),
        "a blue message reached a member of red only: {between:?}"
    );
}

/// A member that joins and never reads again, next to a talker and a
/// listener: the talker keeps talking until the listener sees the
/// notice that the slow one was dropped. The listener misses nothing,
/// the room goes on without it, and its connection is closed.
fn slow_member_is_dropped_and_room_goes_on(imp: &str) {
    let server = start(imp, &[]);
    let mut talker = Client::named(&server, "talker", &["r"]);
    let mut listener = Client::named(&server, "listener", &["r"]);
    // A small receive buffer (set before connecting, so the window is
    // small from the start) makes the kernel hold little for it, so its
    // queue fills after a few hundred messages rather than megabytes.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect_timeout(&server.addr().into(), Duration::from_secs(5))
        .expect("connect");
    let slow_stream: TcpStream = sock.into();
    slow_stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut slow = Client::over(slow_stream);
    slow.send("NICK slow");
    slow.expect("OK nick slow");
    slow.send("JOIN r");
    slow.skip_to("OK join r");
    talker.skip_to("EVENT r slow joined");
    listener.skip_to("EVENT r slow joined");

    let notice = "EVENT r slow dropped (not reading)";
    let dropped = Arc::new(AtomicBool::new(false));
    let stop = Arc::clone(&dropped);
    // The talker says one line at a time and waits for it to come back:
    // a conversation, not a flood. A flood would be faster than the
    // listener reads, and the listener would rightly be dropped too.
    let sender = thread::spawn(move || {
        let pad = "x".repeat(900);
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut sent = 0usize;
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            talker.send(&format!("SAY r {sent} {pad}"));
            let echo = format!("MSG r talker {sent} {pad}");
            while talker.line() != echo {}
            sent += 1;
        }
        (talker, sent)
    });
    let mut got = Vec::new();
    loop {
        let l = listener.line();
        if l == notice {
            dropped.store(true, Ordering::SeqCst);
            break;
        }
        if let Some(rest) = l.strip_prefix("MSG r talker ") {
            got.push(rest.split(' ').next().unwrap().parse::<usize>().unwrap());
        }
    }
    let (mut talker, sent) = sender.join().unwrap();
    eprintln!("{imp}: the slow member was dropped after {sent} messages");
    // The room goes on without the slow member, and the listener got
    // every line, in order, before the notice and after it.
    talker.send("SAY r after");
    talker.skip_to("MSG r talker after");
    for l in listener.skip_to("MSG r talker after") {
        if let Some(rest) = l.strip_prefix("MSG r talker ") {
            got.push(rest.split(' ').next().unwrap().parse::<usize>().unwrap());
        }
    }
    let all: Vec<usize> = (0..sent).collect();
    assert_eq!(got, all, "the listener lost or reordered messages");
    listener.send("WHO r");
    listener.skip_to("MEMBER r listener");
    listener.expect("MEMBER r talker");
    listener.expect("OK who r 2");
    // And the slow member's connection was closed: what was queued for
    // it, then EOF (or a reset).
    slow.expect_closed(Duration::from_secs(10));
}

fn overlong_line_gets_one_error_then_close(imp: &str) {
    let server = start(imp, &[]);
    let mut other = Client::named(&server, "other", &["r"]);
    let mut c = Client::named(&server, "long", &["r"]);
    other.skip_to("EVENT r long joined");
    // The longest line accepted: MAX_LINE bytes before the `\n`.
    let head = "SAY r ";
    let text = "y".repeat(MAX_LINE - head.len());
    c.send(&format!("{head}{text}"));
    c.expect(&format!("MSG r long {text}"));
    // One byte more is too long.
    c.send(&"z".repeat(MAX_LINE + 1));
    c.expect(&format!("ERR line longer than {MAX_LINE} bytes; closing"));
    c.expect_closed(Duration::from_secs(5));
    other.skip_to("EVENT r long left");
    other.send("ROOMS");
    other.expect("ROOM r 1");
}

fn bad_lines_get_one_error_and_connection_stays(imp: &str) {
    let server = start(imp, &[]);
    let mut c = Client::named(&server, "ann", &[]);
    c.writer.write_all(b"SAY r caf\xc3\n\xff\xfe\n").unwrap();
    c.expect("ERR line is not valid UTF-8");
    c.expect("ERR line is not valid UTF-8");
    c.send("DANCE wildly");
    c.expect("ERR unknown command \"DANCE\" (try HELP)");
    c.send("JOIN a/b");
    c.expect("ERR bad name: 1 to 32 characters of A-Z a-z 0-9 _ -");
    c.send("SAY r");
    c.expect("ERR usage: SAY <room> <text> (the text is missing)");
    c.send("");
    c.send("join r");
    c.expect("EVENT r ann joined");
    c.expect("OK join r");
    c.send("SAY r still here, café");
    c.expect("MSG r ann still here, café");
}

fn commands_reply_as_documented(imp: &str) {
    let server = start(imp, &[]);
    let mut ann = Client::named(&server, "ann", &["r", "s"]);
    let mut bob = Client::over(server.client());
    bob.send("NICK ann");
    bob.expect("ERR nick ann is taken");
    bob.send("SAY r hi");
    bob.expect("ERR not in r (JOIN r first)");
    bob.send("JOIN r");
    bob.expect(&format!("EVENT r {} joined", "guest2"));
    bob.expect("OK join r");
    bob.send("NICK bob");
    bob.expect("EVENT r guest2 renamed bob");
    bob.expect("OK nick bob");
    bob.send("JOIN r");
    bob.expect("ERR already in r");
    bob.send("ROOMS");
    bob.expect("ROOM r 2");
    bob.expect("ROOM s 1");
    bob.expect("OK rooms 2");
    bob.send("WHO nowhere");
    bob.expect("ERR no room nowhere");
    bob.send("HELP");
    assert!(bob.line().starts_with("INFO commands: NICK"));
    bob.expect("OK help");
    bob.send("LEAVE r");
    bob.expect("EVENT r bob left");
    bob.expect("OK leave r");
    ann.skip_to("EVENT r bob left");
    ann.send("QUIT");
    ann.expect("OK bye");
    ann.expect_closed(Duration::from_secs(5));
    bob.send("ROOMS");
    bob.expect("OK rooms 0");
}

fn max_conns_is_enforced(imp: &str) {
    let server = start(imp, &["--max-conns", "2"]);
    let _a = Client::named(&server, "a", &[]);
    let _b = Client::named(&server, "b", &[]);
    let mut third = BufReader::new(server.client());
    let mut line = String::new();
    third
        .read_line(&mut line)
        .expect("a line for the third client");
    assert_eq!(line, "ERR server full\n");
}

fn sigterm_tells_members_and_exits_0(imp: &str) {
    let mut server = start(imp, &[]);
    let mut c = Client::named(&server, "ann", &["r"]);
    server.sigterm().expect("SIGTERM");
    c.expect("INFO server shutting down");
    c.expect_closed(Duration::from_secs(5));
    let status = server
        .wait_timeout(Duration::from_secs(8))
        .expect("still running 8 s after SIGTERM");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn rejects_an_unknown_implementation() {
    let out = std::process::Command::new(bin())
        .args(["--impl", "fibers", "--addr", "127.0.0.1:0"])
        .output()
        .expect("run chat");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fibers"), "{err}");
}

/// One round of ten members leaving each of the ways a member leaves by
/// itself: `QUIT`, a plain close, a reset, an overlong line (being
/// dropped is the slow-member test's).
fn leave_every_way(server: &ServerProcess) {
    let mut stay = Client::named(server, "stay", &["r"]);
    for i in 0..10 {
        let nick = format!("m{i}");
        let mut c = Client::named(server, &nick, &["r"]);
        stay.skip_to(&format!("EVENT r {nick} joined"));
        match i % 4 {
            0 => {
                c.send("QUIT");
                c.skip_to("OK bye");
            }
            1 => drop(c),
            2 => {
                // SO_LINGER 0: close sends RST instead of FIN.
                socket2::SockRef::from(&c.writer)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                drop(c);
            }
            _ => {
                c.send(&"z".repeat(MAX_LINE + 1));
                c.skip_to(&format!("ERR line longer than {MAX_LINE} bytes; closing"));
            }
        }
        stay.skip_to(&format!("EVENT r {nick} left"));
    }
    stay.send("QUIT");
    stay.skip_to("OK bye");
    stay.expect_closed(Duration::from_secs(5));
}

/// The server's (threads, descriptors) once five readings 50 ms apart
/// agree, or the last one after 5 s.
fn steady(pid: u32) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let read = || {
        let c = tree::counts(pid).expect("the server is gone");
        (c.threads, c.fds)
    };
    let (mut last, mut same) = (read(), 0);
    while same < 5 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        let now = read();
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    last
}

/// The server's threads and descriptors, once they are back to `want`,
/// or what they were at the deadline.
fn settle_to(pid: u32, want: (u64, u64)) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let c = tree::counts(pid).expect("the server is gone");
        let now = (c.threads, c.fds);
        if now == want || Instant::now() > deadline {
            return now;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Members leaving by `QUIT`, close, reset and an overlong line leave no
/// thread and no descriptor behind, round after round, and a server with
/// idle members uses no CPU to speak of: it sleeps, it does not spin.
fn departures_leave_nothing_behind_and_idle_costs_no_cpu(imp: &str) {
    let server = start(imp, &[]);
    let pid = server.pid();
    // The readiness line comes before the model starts its threads (a
    // tokio runtime is built after it), so the baseline is taken after
    // one round, once the counts have held still for a quarter second.
    leave_every_way(&server);
    let baseline = steady(pid);
    for round in 2..=3 {
        leave_every_way(&server);
        assert_eq!(
            settle_to(pid, baseline),
            baseline,
            "(threads, descriptors) not back to what they were after round 1 \
             when round {round} of ten members had left"
        );
    }

    let idle: Vec<Client> = (0..5)
        .map(|i| Client::named(&server, &format!("idle{i}"), &["r"]))
        .collect();
    let before = tree::cpu_ns(pid).expect("cpu");
    thread::sleep(Duration::from_secs(1));
    let used = tree::cpu_ns(pid).expect("cpu") - before;
    assert!(
        used < 100_000_000,
        "the server used {} ms of CPU in 1 s with 5 idle members",
        used / 1_000_000
    );
    drop(idle);
}
