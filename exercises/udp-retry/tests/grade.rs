#![cfg(feature = "grade")]
//! Grading of `udp-retry`, over real loopback UDP sockets: an echo server
//! that drops the first datagram it gets (the loss is made, not hoped
//! for), one that never answers, and a stranger that writes to the
//! client's port just before the server's reply. Each `request` runs on a
//! thread of its own and the test waits for it at most `WITHIN`: a
//! request that hangs fails the test instead of stopping it.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ex_udp_retry::{ATTEMPTS, TIMEOUT, request};

/// Bound of every wait: the longest a correct request may take, and a
/// second more.
const WITHIN: Duration = Duration::from_secs(2);

fn bind() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").expect("bind a loopback UDP socket")
}

/// An echo server on its own thread: drops the first `drop_first`
/// datagrams, echoes the rest; before each echo, `before_reply` may act
/// (the stranger's write). Returns its address; the thread ends after
/// `serve` datagrams or `WITHIN` of silence.
fn server(drop_first: usize, serve: usize, before_reply: fn(SocketAddr)) -> SocketAddr {
    let sock = bind();
    let addr = sock.local_addr().unwrap();
    sock.set_read_timeout(Some(WITHIN)).unwrap();
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        for i in 0..drop_first + serve {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                return;
            };
            if i < drop_first {
                continue; // lost on the way
            }
            before_reply(from);
            let _ = sock.send_to(&buf[..n], from);
        }
    });
    addr
}

/// Runs `request` on a thread and waits for it at most `WITHIN`.
fn request_within(
    server: SocketAddr,
    payload: &'static [u8],
) -> Result<std::io::Result<Vec<u8>>, String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let socket = bind();
        let mut reply = [0u8; 2048];
        let r = request(&socket, server, payload, &mut reply).map(|n| reply[..n].to_vec());
        let _ = tx.send(r);
    });
    rx.recv_timeout(WITHIN).map_err(|_| {
        format!(
            "request({:?}) had not returned after {WITHIN:?}",
            String::from_utf8_lossy(payload)
        )
    })
}

#[test]
fn a_plain_request_gets_its_echo() {
    let s = server(0, 1, |_| {});
    let r = request_within(s, b"hello")
        .unwrap()
        .expect("request failed");
    assert_eq!(r, b"hello");
}

#[test]
fn a_lost_request_is_sent_again() {
    let s = server(1, 1, |_| {});
    let started = Instant::now();
    let r = request_within(s, b"second try")
        .unwrap()
        .expect("request failed");
    assert_eq!(r, b"second try");
    assert!(
        started.elapsed() >= TIMEOUT,
        "the reply came before one TIMEOUT had passed, yet the first datagram was dropped"
    );
}

#[test]
fn a_server_that_never_answers_gives_timed_out() {
    let s = server(usize::MAX / 2, 0, |_| {});
    let started = Instant::now();
    let r = request_within(s, b"anyone?").unwrap();
    let e = r.expect_err("request returned a reply from a server that never answers");
    assert_eq!(e.kind(), ErrorKind::TimedOut, "wrong error: {e}");
    let took = started.elapsed();
    assert!(
        took >= TIMEOUT * (ATTEMPTS - 1),
        "gave up after {took:?}, before {ATTEMPTS} attempts of {TIMEOUT:?}"
    );
}

#[test]
fn a_strangers_datagram_is_not_the_reply() {
    // Just before the server answers, another socket writes to the
    // client's port; loopback delivers it first.
    let s = server(0, 1, |client| {
        let _ = bind().send_to(b"not from the server", client);
    });
    let r = request_within(s, b"mine").unwrap().expect("request failed");
    assert_eq!(
        String::from_utf8_lossy(&r),
        "mine",
        "took a stranger's datagram for the server's reply"
    );
}
