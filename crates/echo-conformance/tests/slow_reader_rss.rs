//! `slow-reader` with a pid: the server's memory (PSS) is sampled from
//! `/proc`.
//!
//! A test binary of its own, so that no other test allocates in this
//! process while its growth is measured. The server runs in-process, so the
//! pid is this process's own.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;

use echo_conformance::{SLOW_READER_PSS_LIMIT, Target, Verdict, run_suite};

/// Thread per client with a fixed 16 KiB buffer: a blocked write stops the
/// reading, so memory stays bounded however much a client sends.
fn echo(mut s: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n @ 1..) = s.read(&mut buf) {
        if s.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

#[test]
fn bounded_buffers_stay_under_the_pss_limit() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for s in listener.incoming().flatten() {
            thread::spawn(move || echo(s));
        }
    });
    let target = Target {
        addr,
        pid: Some(std::process::id()),
    };
    let only = ["slow-reader".to_string()];
    let report = run_suite(&target, &[], Some(&only), &mut |_| {}).unwrap();
    let outcome = &report.outcomes[0];
    assert_eq!(outcome.verdict, Verdict::Pass, "{report}");
    let limit = format!("(limit {} MiB)", SLOW_READER_PSS_LIMIT >> 20);
    assert!(
        outcome.detail.contains("PSS growth peak") && outcome.detail.contains(&limit),
        "{outcome}"
    );
}
