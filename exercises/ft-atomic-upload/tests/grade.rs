#![cfg(feature = "grade")]
//! Grading of `ft-atomic-upload`, over real sockets with `file-transfer`'s
//! client: a good upload is published; an interrupted upload and a wrong
//! digest leave the folder as it was, an older file of the same name
//! included, with no temporary file left.
//!
//! Only built with `--features grade`, so a plain `cargo test --workspace`
//! does not grade the unsolved starter.

use std::fs;
use std::io::{Cursor, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ex_ft_atomic_upload::{Server, start};
use file_transfer::client;
use file_transfer::proto::{self, Request};

/// The test's folder, removed when the test ends, passed or failed.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl std::ops::Deref for Dir {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

fn fresh_dir() -> Dir {
    static SERIAL: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ex-ft-atomic-{}-{}",
        std::process::id(),
        SERIAL.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).unwrap();
    Dir(dir)
}

fn entries(dir: &PathBuf) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// Waits (5 s at most) until the server has finished `n` connections.
fn wait_handled(server: &Server, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.handled() < n {
        assert!(
            Instant::now() < deadline,
            "the server never finished the upload"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn a_complete_upload_is_published() {
    let dir = fresh_dir();
    let server = start(dir.to_path_buf()).unwrap();
    let data = body(300_000, 1);
    client::upload(server.addr, "report.bin", &mut Cursor::new(&data)).unwrap();
    assert_eq!(fs::read(dir.join("report.bin")).unwrap(), data);
    assert_eq!(entries(&dir), ["report.bin"], "a temporary file is left");
}

#[test]
fn an_interrupted_upload_leaves_no_file_and_keeps_the_old_one() {
    let dir = fresh_dir();
    let server = start(dir.to_path_buf()).unwrap();
    let old = body(1000, 2);
    fs::write(dir.join("report.bin"), &old).unwrap();

    let new = body(400_000, 3);
    let mut s = client::connect(server.addr).unwrap();
    client::send_request(
        &mut s,
        &Request::Upload {
            name: "report.bin".into(),
            size: new.len() as u64,
            sha256: proto::to_hex(&proto::sha256(&new)),
        },
    )
    .unwrap();
    assert!(client::read_reply(&mut s).unwrap().ok, "no go-ahead");
    s.write_all(&new[..150_000]).unwrap();
    drop(s);
    wait_handled(&server, 1);

    let now = fs::read(dir.join("report.bin")).unwrap();
    assert!(
        now == old,
        "after an upload cut off at 150000 bytes, report.bin holds {} bytes, not the old 1000",
        now.len()
    );
    assert_eq!(entries(&dir), ["report.bin"], "a temporary file is left");

    let fresh = body(200_000, 4);
    let mut s = client::connect(server.addr).unwrap();
    client::send_request(
        &mut s,
        &Request::Upload {
            name: "fresh.bin".into(),
            size: fresh.len() as u64,
            sha256: proto::to_hex(&proto::sha256(&fresh)),
        },
    )
    .unwrap();
    assert!(client::read_reply(&mut s).unwrap().ok, "no go-ahead");
    s.write_all(&fresh[..100_000]).unwrap();
    drop(s);
    wait_handled(&server, 2);
    assert!(
        !dir.join("fresh.bin").exists(),
        "an upload cut off halfway is published under its name, truncated"
    );
}

#[test]
fn a_wrong_digest_publishes_nothing_and_keeps_the_old_one() {
    let dir = fresh_dir();
    let server = start(dir.to_path_buf()).unwrap();
    let old = body(1000, 5);
    fs::write(dir.join("data.bin"), &old).unwrap();
    let new = body(100_000, 6);
    let mut s = client::connect(server.addr).unwrap();
    client::send_request(
        &mut s,
        &Request::Upload {
            name: "data.bin".into(),
            size: new.len() as u64,
            sha256: proto::to_hex(&proto::sha256(b"not these bytes")),
        },
    )
    .unwrap();
    assert!(client::read_reply(&mut s).unwrap().ok, "no go-ahead");
    s.write_all(&new).unwrap();
    let verdict = client::read_reply(&mut s).unwrap();
    assert!(!verdict.ok, "a wrong digest was accepted");
    assert!(
        fs::read(dir.join("data.bin")).unwrap() == old,
        "a refused upload replaced data.bin"
    );
    assert_eq!(entries(&dir), ["data.bin"], "a temporary file is left");
}
