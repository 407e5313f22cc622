//! The file-transfer server over real sockets: a server per test on
//! `127.0.0.1:0` with its own storage folder, random files up and down
//! with their digests compared, sixteen transfers at once, an interrupted
//! upload, hostile names, a wrong digest and malformed headers.

use std::fs;
use std::io::{Cursor, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use echo_protocol::Config;
use file_transfer::client;
use file_transfer::proto::{self, MAX_HEADER, Reply, Request};
use file_transfer::server::{self, Flags, TEMP_PREFIX};

/// Longest any wait for the server's side of things may take.
const WAIT: Duration = Duration::from_secs(5);

/// A server on its own thread, with a fresh `root/store` folder; `root`
/// exists so that a test can check nothing was written next to `store`.
struct TestServer {
    addr: SocketAddr,
    root: PathBuf,
    store: PathBuf,
    shutdown: echo_protocol::Shutdown,
    done: mpsc::Receiver<std::io::Result<()>>,
}

impl TestServer {
    fn start(max_file_size: u64, max_conns: usize) -> TestServer {
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "ft-test-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        let store = root.join("store");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = echo_protocol::Shutdown::manual().unwrap();
        let config = Config {
            addr,
            max_conns,
            verbose: false,
            nofile_limit: 1024,
            shutdown: shutdown.clone(),
        };
        let flags = Flags {
            dir: store.clone(),
            max_file_size,
        };
        let (tx, done) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(server::serve(listener, &config, flags));
        });
        let server = TestServer {
            addr,
            root,
            store,
            shutdown,
            done,
        };
        // `serve` creates the folder before it polls; a list answers only
        // once it is serving.
        client::list(addr).expect("the server answers a list");
        server
    }

    fn new() -> TestServer {
        TestServer::start(proto::DEFAULT_MAX_FILE_SIZE, 10_000)
    }

    /// Everything in the storage folder, temporary files included.
    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.store)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn temp_files(&self) -> Vec<String> {
        self.entries()
            .into_iter()
            .filter(|n| n.starts_with(TEMP_PREFIX))
            .collect()
    }

    /// Polls `cond` every 5 ms until it holds or [`WAIT`] passes.
    fn wait_until(&self, what: &str, mut cond: impl FnMut(&TestServer) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !cond(self) {
            assert!(Instant::now() < deadline, "after {WAIT:?}: {what}");
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.request(self.addr);
        // Bounded: the server gives open transfers SHUTDOWN_GRACE at most.
        let ended = self.done.recv_timeout(WAIT + server::SHUTDOWN_GRACE);
        let _ = fs::remove_dir_all(&self.root);
        if !thread::panicking() {
            assert!(
                matches!(ended, Ok(Ok(()))),
                "the server did not end cleanly: {ended:?}"
            );
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift), different per seed.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

fn upload(addr: SocketAddr, name: &str, data: &[u8]) -> Result<Reply, String> {
    client::upload(addr, name, &mut Cursor::new(data))
}

fn download(addr: SocketAddr, name: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    client::download(addr, name, &mut out)?;
    Ok(out)
}

/// A raw connection that has sent an upload header for `size` bytes and
/// received the go-ahead.
fn start_upload(addr: SocketAddr, name: &str, data: &[u8]) -> TcpStream {
    let mut s = client::connect(addr).unwrap();
    client::send_request(
        &mut s,
        &Request::Upload {
            name: name.into(),
            size: data.len() as u64,
            sha256: proto::to_hex(&proto::sha256(data)),
        },
    )
    .unwrap();
    let go = client::read_reply(&mut s).unwrap();
    assert!(go.ok, "no go-ahead: {go:?}");
    s
}

/// Sends raw bytes, then expects exactly one error reply containing
/// `expect`, then the end of the connection.
fn expect_error(addr: SocketAddr, raw: &[u8], half_close: bool, expect: &str) {
    let mut s = client::connect(addr).unwrap();
    s.write_all(raw).unwrap();
    if half_close {
        s.shutdown(Shutdown::Write).unwrap();
    }
    let reply = client::read_reply(&mut s).unwrap_or_else(|e| panic!("{expect}: {e}"));
    assert!(!reply.ok, "{expect}: accepted");
    let msg = reply.error.unwrap_or_default();
    assert!(msg.contains(expect), "wanted {expect:?}, got {msg:?}");
    assert!(!msg.contains('\n'), "not one line: {msg:?}");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{expect}: more after the error: {rest:?}");
}

fn raw_frame(json: &[u8]) -> Vec<u8> {
    let mut f = (json.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(json);
    f
}

#[test]
fn files_of_every_size_go_up_and_come_back_identical() {
    let srv = TestServer::new();
    let sizes = [0, 1, 1000, 64 * 1024, 64 * 1024 + 1, 3 * 1024 * 1024 + 7];
    for (i, &len) in sizes.iter().enumerate() {
        let data = random_bytes(len, i as u64);
        let name = format!("file-{len}.bin");
        let reply = upload(srv.addr, &name, &data).unwrap();
        let digest = proto::to_hex(&proto::sha256(&data));
        assert_eq!(reply.size, Some(len as u64));
        assert_eq!(reply.sha256.as_deref(), Some(digest.as_str()));
        assert_eq!(
            fs::read(srv.store.join(&name)).unwrap(),
            data,
            "{name} on disk"
        );
        assert_eq!(
            download(srv.addr, &name).unwrap(),
            data,
            "{name} downloaded"
        );
    }
    let listed = client::list(srv.addr).unwrap();
    let mut want: Vec<(String, u64)> = sizes
        .iter()
        .map(|&l| (format!("file-{l}.bin"), l as u64))
        .collect();
    want.sort();
    assert_eq!(listed, want);
    assert!(srv.temp_files().is_empty());
}

#[test]
fn an_upload_replaces_an_existing_name_whole() {
    let srv = TestServer::new();
    let old = random_bytes(200_000, 1);
    let new = random_bytes(100_000, 2);
    upload(srv.addr, "doc", &old).unwrap();
    upload(srv.addr, "doc", &new).unwrap();
    assert_eq!(download(srv.addr, "doc").unwrap(), new);
    assert_eq!(srv.entries(), ["doc"]);
}

#[test]
fn sixteen_transfers_at_once_in_both_directions() {
    let srv = TestServer::new();
    let len = 512 * 1024;
    for i in 0..8 {
        upload(srv.addr, &format!("old-{i}"), &random_bytes(len, 100 + i)).unwrap();
    }
    thread::scope(|s| {
        let handles: Vec<_> = (0..16u64)
            .map(|i| {
                let addr = srv.addr;
                s.spawn(move || {
                    if i % 2 == 0 {
                        let data = random_bytes(len + i as usize, 200 + i);
                        upload(addr, &format!("new-{i}"), &data).map(|_| ())
                    } else {
                        let j = i / 2;
                        let got = download(addr, &format!("old-{j}"))?;
                        if got == random_bytes(len, 100 + j) {
                            Ok(())
                        } else {
                            Err(format!("old-{j}: wrong bytes"))
                        }
                    }
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            h.join()
                .unwrap()
                .unwrap_or_else(|e| panic!("transfer {i}: {e}"));
        }
    });
    for i in (0..16u64).step_by(2) {
        let want = random_bytes(len + i as usize, 200 + i);
        assert_eq!(fs::read(srv.store.join(format!("new-{i}"))).unwrap(), want);
    }
    assert!(srv.temp_files().is_empty());
}

#[test]
fn an_interrupted_upload_leaves_nothing_behind() {
    let srv = TestServer::new();
    let data = random_bytes(1024 * 1024, 7);
    let mut s = start_upload(srv.addr, "half", &data);
    let half = data.len() / 2;
    s.write_all(&data[..half]).unwrap();
    // The half is in the temporary file, under a name no client can ask for.
    srv.wait_until("half the body in a temporary file", |srv| {
        srv.temp_files()
            .first()
            .is_some_and(|t| fs::metadata(srv.store.join(t)).unwrap().len() == half as u64)
    });
    assert!(client::list(srv.addr).unwrap().is_empty());
    drop(s);
    srv.wait_until("the temporary file removed", |srv| srv.entries().is_empty());
    // Still serving.
    upload(srv.addr, "whole", &data).unwrap();
    assert_eq!(download(srv.addr, "whole").unwrap(), data);
    assert_eq!(srv.entries(), ["whole"]);
}

#[test]
fn hostile_names_are_refused_and_nothing_is_written_outside() {
    let srv = TestServer::new();
    let outside = srv.root.join("escaped");
    let absolute = outside.to_str().unwrap().to_string();
    let long = "a".repeat(proto::MAX_NAME + 1);
    let hostile = [
        "",
        ".",
        "..",
        "../escaped",
        "../../escaped",
        absolute.as_str(),
        "sub/escaped",
        "..\\escaped",
        "a\0b",
        ".hidden",
        ".upload-1-1",
        "new\nline",
        long.as_str(),
    ];
    // A file the downloads would reach if a name could climb out.
    fs::write(&outside, b"secret").unwrap();
    for name in hostile {
        let up = upload(srv.addr, name, b"payload").unwrap_err();
        assert!(up.starts_with("bad name"), "upload {name:?}: {up}");
        let down = download(srv.addr, name).unwrap_err();
        assert!(down.starts_with("bad name"), "download {name:?}: {down}");
    }
    assert!(srv.entries().is_empty(), "{:?}", srv.entries());
    let mut around: Vec<_> = fs::read_dir(&srv.root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    around.sort();
    assert_eq!(around, ["escaped", "store"]);
    assert_eq!(fs::read(&outside).unwrap(), b"secret");
}

#[test]
fn a_wrong_digest_is_refused_and_nothing_published() {
    let srv = TestServer::new();
    let data = random_bytes(300_000, 9);
    let mut s = client::connect(srv.addr).unwrap();
    client::send_request(
        &mut s,
        &Request::Upload {
            name: "forged".into(),
            size: data.len() as u64,
            sha256: proto::to_hex(&proto::sha256(b"something else")),
        },
    )
    .unwrap();
    assert!(client::read_reply(&mut s).unwrap().ok);
    s.write_all(&data).unwrap();
    let reply = client::read_reply(&mut s).unwrap();
    assert!(!reply.ok);
    assert!(reply.error.unwrap().contains("sha256 mismatch"));
    // The temporary file is dropped before the reply is queued.
    assert!(srv.entries().is_empty(), "{:?}", srv.entries());
    assert!(
        download(srv.addr, "forged")
            .unwrap_err()
            .contains("no such file")
    );
}

#[test]
fn malformed_headers_get_one_error_each_and_spare_the_others() {
    let srv = TestServer::start(1024 * 1024, 10_000);
    let data = random_bytes(800 * 1024, 11);
    let mut inflight = start_upload(srv.addr, "inflight", &data);
    inflight.write_all(&data[..300 * 1024]).unwrap();

    let good_sha = proto::to_hex(&proto::sha256(b""));
    let too_big = format!(
        r#"{{"op":"upload","name":"x","size":{},"sha256":"{good_sha}"}}"#,
        1024 * 1024 + 1
    );
    let cases: Vec<(Vec<u8>, bool, &str)> = vec![
        (
            0u32.to_be_bytes().to_vec(),
            false,
            "header length 0 out of range",
        ),
        (
            (MAX_HEADER as u32 + 1).to_be_bytes().to_vec(),
            false,
            "out of range",
        ),
        (u32::MAX.to_be_bytes().to_vec(), false, "out of range"),
        (raw_frame(b"{not json"), false, "bad header"),
        (raw_frame(b"42"), false, "bad header"),
        (
            raw_frame(br#"{"op":"delete","name":"a"}"#),
            false,
            "unknown variant `delete`",
        ),
        (raw_frame(br#"{"name":"a"}"#), false, "missing field `op`"),
        (
            raw_frame(br#"{"op":"upload","name":"a"}"#),
            false,
            "missing field `size`",
        ),
        (
            raw_frame(br#"{"op":"upload","name":"a","size":1,"sha256":"xyz"}"#),
            false,
            "bad sha256",
        ),
        (raw_frame(too_big.as_bytes()), false, "file too large"),
        // A prefix announcing 10 bytes, 3 sent, then EOF.
        (
            [&10u32.to_be_bytes()[..], b"{\"o"].concat(),
            true,
            "connection closed inside the header",
        ),
    ];
    for (raw, half_close, expect) in &cases {
        expect_error(srv.addr, raw, *half_close, expect);
    }

    inflight.write_all(&data[300 * 1024..]).unwrap();
    let done = client::read_reply(&mut inflight).unwrap();
    assert!(done.ok, "{done:?}");
    assert_eq!(download(srv.addr, "inflight").unwrap(), data);
    assert_eq!(srv.entries(), ["inflight"]);
}

#[test]
fn a_client_that_stops_reading_stalls_nobody_else() {
    let srv = TestServer::new();
    let big = random_bytes(8 * 1024 * 1024, 21);
    upload(srv.addr, "big", &big).unwrap();
    // Asks for 8 MiB and reads only the header: the server's writes to it
    // soon answer WouldBlock, and its turn must end there.
    let mut stuck = client::connect(srv.addr).unwrap();
    client::send_request(&mut stuck, &Request::Download { name: "big".into() }).unwrap();
    let header = client::read_reply(&mut stuck).unwrap();
    assert_eq!(header.size, Some(big.len() as u64));
    let small = random_bytes(100_000, 22);
    upload(srv.addr, "small", &small).unwrap();
    assert_eq!(download(srv.addr, "small").unwrap(), small);
    // And the stuck one still gets every byte once it reads.
    let mut body = Vec::new();
    (&mut stuck)
        .take(big.len() as u64)
        .read_to_end(&mut body)
        .unwrap();
    assert!(body == big, "the stalled download's bytes differ");
}

#[test]
fn connections_beyond_the_limit_are_told_the_server_is_busy() {
    let srv = TestServer::start(1024, 2);
    let data = b"x".repeat(10);
    let a = start_upload(srv.addr, "a", &data);
    let b = start_upload(srv.addr, "b", &data);
    let mut c = client::connect(srv.addr).unwrap();
    let reply = client::read_reply(&mut c).unwrap();
    assert_eq!(reply.error.as_deref(), Some("server busy"));
    assert_eq!(srv.temp_files().len(), 2);
    drop((a, b));
    srv.wait_until("both uploads abandoned", |srv| srv.temp_files().is_empty());
    assert!(client::list(srv.addr).unwrap().is_empty());
}

/// Where downloads land on the client side: only once verified.
#[test]
fn download_to_writes_the_file_only_when_complete() {
    let srv = TestServer::new();
    let data = random_bytes(200_000, 5);
    upload(srv.addr, "d", &data).unwrap();
    let out = srv.root.join("out.bin");
    client::download_to(srv.addr, "d", &out).unwrap();
    assert_eq!(fs::read(&out).unwrap(), data);
    let missing = srv.root.join("missing.bin");
    assert!(client::download_to(srv.addr, "nope", &missing).is_err());
    assert!(!missing.exists());
    let leftovers: Vec<_> = fs::read_dir(&srv.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
