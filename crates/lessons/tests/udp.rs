//! Datagrams keep their boundaries, one socket serves several peers, a
//! datagram into a full buffer is lost and the client's retry recovers, and
//! the size limit is enforced by the kernel.

use std::time::Duration;

use lessons::udp::{
    EchoServer, MAX_DATAGRAM, client, datagram_sizes, loss_and_retry, request, send_one,
    truncated_read,
};

#[test]
fn three_sends_three_receives_of_the_same_sizes() {
    let server = EchoServer::start().unwrap();
    let mut got = datagram_sizes(server.addr(), &[5, 1000, 60_000]).unwrap();
    // Loopback does not reorder, but UDP does not promise order: compare
    // the sizes as a set of boundaries, not a sequence.
    got.sort_unstable();
    assert_eq!(got, [5, 1000, 60_000]);
    let stats = server.stop().unwrap();
    assert_eq!(stats.datagrams, 3);
}

#[test]
fn a_short_buffer_loses_the_rest_of_the_datagram_only() {
    let (first, second) = truncated_read(2000, 1024).unwrap();
    let expected: Vec<u8> = (0..1024).map(|i| (i % 251) as u8).collect();
    assert_eq!(first, expected, "the first 1024 bytes of the datagram");
    assert_eq!(
        second, b"end",
        "the next datagram, untouched by the first's rest"
    );
}

#[test]
fn one_socket_serves_several_peers() {
    let server = EchoServer::start().unwrap();
    let peers: Vec<_> = (0..3)
        .map(|_| client(Duration::from_secs(2)).unwrap())
        .collect();
    for (i, p) in peers.iter().enumerate() {
        let msg = format!("peer {i}");
        let (reply, _) = request(p, server.addr(), 7, msg.as_bytes(), 3).unwrap();
        assert_eq!(
            reply,
            msg.as_bytes(),
            "each peer gets its own datagram back"
        );
    }
    let stats = server.stop().unwrap();
    assert_eq!(stats.peers, 3);
    assert!(stats.datagrams >= 3);
}

#[test]
fn a_dropped_request_is_recovered_by_the_retry() {
    let run = loss_and_retry(200, Duration::from_millis(300)).unwrap();
    assert!(
        run.delivered < run.sent,
        "a minimal receive buffer kept all {} datagrams",
        run.sent
    );
    assert_eq!(run.reply, b"ping");
    // The first request went into a full buffer: it is lost, and only a
    // retry can be answered. Usually the second attempt is; on a loaded
    // machine the server may start reading late enough for the second to
    // find the buffer still full too.
    assert!(
        run.attempts >= 2,
        "the first request, sent into a full receive buffer, was answered"
    );
}

#[test]
fn over_65507_bytes_is_emsgsize() {
    assert_eq!(send_one(MAX_DATAGRAM).unwrap(), MAX_DATAGRAM);
    let e = send_one(MAX_DATAGRAM + 1).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EMSGSIZE), "{e}");
}
