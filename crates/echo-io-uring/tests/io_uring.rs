//! Black-box tests of `echo-io-uring`: the shared conformance suite and
//! fault suite, the command line, `--max-conns`, shutdown (which must
//! cancel the accept in flight), the two things a completion loop must do
//! by hand (back-pressure through its one buffer per connection with
//! partial sends resubmitted, and surviving `EMFILE` without spinning),
//! every byte of long and pipelined streams, and the one-line failure
//! where io_uring is forbidden.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use echo_conformance::{FaultTarget, ServerProcess, run_faults};
use echo_io_uring::{BUFFER_SIZE, QUEUE_CAP};

/// The two modes every general test runs in: multishot accept and recv
/// with provided buffers (the default here: the kernel has them), and one
/// SQE per operation with a buffer per connection.
const MODES: [&[&str]; 2] = [&[], &["--single-shot"]];

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_echo-io-uring"))
}

#[test]
fn conforms() {
    echo_conformance::assert_conforms(bin(), &[]);
}

#[test]
fn conforms_single_shot() {
    echo_conformance::assert_conforms(bin(), &["--single-shot"]);
}

fn assert_faults(args: &[&str]) {
    let target = FaultTarget::Binary {
        bin: bin().to_path_buf(),
        args: args.iter().map(|a| a.to_string()).collect(),
    };
    let report =
        run_faults(&target, &[], None, &mut |o| eprintln!("{o}")).expect("the fault suite runs");
    assert!(report.ok(), "{args:?}: faults:\n{report}");
}

#[test]
fn survives_the_faults() {
    assert_faults(&[]);
}

#[test]
fn survives_the_faults_single_shot() {
    assert_faults(&["--single-shot"]);
}

#[test]
fn declares_no_limits() {
    let limits = echo_conformance::expected_limits(bin()).expect("--expected-limits");
    assert!(limits.is_empty(), "{limits:?}");
}

#[test]
fn rejects_bad_input() {
    echo_conformance::cli::assert_rejects_bad_input(bin());
    let out = Command::new(bin())
        .args(["--single-shot", "yes"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error:"));
}

#[test]
fn enforces_max_conns() {
    for args in MODES {
        echo_conformance::limits::assert_max_conns_enforced(bin(), args);
    }
}

/// Also the cancellation: the accept submitted before SIGTERM keeps the
/// listener's file open in the ring, so a server that only closed its
/// descriptor would still accept (and serve) the next client.
#[test]
fn shuts_down_gracefully() {
    for args in MODES {
        echo_conformance::limits::assert_graceful_shutdown(bin(), args);
    }
}

/// A client that sends without reading is stopped after `QUEUE_CAP`
/// buffers (its multishot recv cancelled), or one with `--single-shot`
/// (the connection receives again only once its last receive was sent in
/// full), plus what the kernel's socket buffers hold. Once the client reads,
/// every byte comes back in order, which takes partial sends resubmitted
/// from where they stopped (the send of a full buffer into a nearly full
/// socket returns short).
#[test]
fn stops_reading_a_client_that_does_not_read() {
    echo_conformance::limits::assert_back_pressure(bin(), &[], QUEUE_CAP * BUFFER_SIZE);
    echo_conformance::limits::assert_back_pressure(bin(), &["--single-shot"], BUFFER_SIZE);
}

/// With only 64 descriptors, 100 clients exhaust them. An accept through
/// the ring fails with `EMFILE` at once, even with an empty backlog, so
/// resubmitting it would spin; the surplus clients are closed rather than
/// left hanging, and once the clients leave a new one is served (the
/// server went back from readiness to the ring's accept).
#[test]
fn survives_running_out_of_descriptors() {
    for args in MODES {
        echo_conformance::limits::assert_sheds_when_out_of_descriptors(bin(), args);
    }
}

/// The byte at stream offset `i` of client `c`: every client's stream
/// differs, so bytes received into one connection's buffer and sent from
/// another's would show.
fn pattern(c: usize, i: usize) -> u8 {
    ((i + 7 * c) % 251) as u8
}

/// Several clients at once each write `total` bytes in `write_size`
/// writes from one thread while another reads the echo, then half-close;
/// every byte must come back, in order, then EOF. Many receives, sends and
/// partial sends are in flight at once, each on its own buffer.
#[test]
fn echoes_every_byte_of_concurrent_streams() {
    for args in MODES {
        concurrent_streams(args);
    }
}

fn concurrent_streams(args: &[&str]) {
    let server = ServerProcess::spawn(bin(), args).expect("spawn");
    let shapes = [
        (4 * 1024 * 1024, 1024 * 1024),
        (4 * 1024 * 1024, 100_000),
        (1024 * 1024, 1000),
        (8 * 1024 * 1024, 8 * 1024 * 1024),
    ];
    let clients: Vec<_> = shapes
        .iter()
        .enumerate()
        .map(|(c, &(total, write_size))| {
            let mut reader = server.client();
            let mut writer = reader.try_clone().unwrap();
            let sender = thread::spawn(move || {
                let mut sent = 0;
                while sent < total {
                    let n = write_size.min(total - sent);
                    let chunk: Vec<u8> = (sent..sent + n).map(|i| pattern(c, i)).collect();
                    writer.write_all(&chunk).expect("write");
                    sent += n;
                }
                writer.shutdown(Shutdown::Write).unwrap();
            });
            thread::spawn(move || {
                // `server.client()` has a read timeout: a stalled echo fails.
                let mut echoed = Vec::with_capacity(total);
                reader
                    .read_to_end(&mut echoed)
                    .unwrap_or_else(|e| panic!("client {c}: {e}"));
                sender.join().unwrap();
                assert_eq!(echoed.len(), total, "client {c}: bytes back");
                if let Some(i) = (0..total).find(|&i| echoed[i] != pattern(c, i)) {
                    panic!("client {c}: byte {i} differs");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client failed");
    }
    let status = server.terminate().expect("terminate");
    assert!(status.success(), "exit status {status}");
}

/// A thousand small messages written back to back without reading, then
/// read back: many messages per receive, and the echo of the first ones
/// sent while the last are still arriving.
#[test]
fn echoes_pipelined_messages() {
    for args in MODES {
        pipelined_messages(args);
    }
}

fn pipelined_messages(args: &[&str]) {
    let server = ServerProcess::spawn(bin(), args).expect("spawn");
    let mut c = server.client();
    let mut sent = Vec::new();
    for i in 0..1000usize {
        let msg = format!("message {i} {}\n", "x".repeat(i % 97));
        c.write_all(msg.as_bytes()).unwrap();
        sent.extend_from_slice(msg.as_bytes());
    }
    let mut back = vec![0; sent.len()];
    c.read_exact(&mut back)
        .expect("the pipelined messages back");
    assert!(back == sent, "the pipelined messages came back altered");
    c.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "bytes after the echo: {}", rest.len());
    drop(c);
    let status = server.terminate().expect("terminate");
    assert!(status.success(), "exit status {status}");
}

/// Clients stalled at once hold more buffers than the first slab of
/// provided buffers (64): each keeps `QUEUE_CAP` buffers unsent while it
/// does not read, plus what its multishot recv took before the cancel
/// took effect. The kernel finds the pool empty (`ENOBUFS`), the pool must
/// grow (else the recv of every other client starves), and a fresh client
/// is still served meanwhile. Once the stalled clients read, each gets
/// every byte back, in order.
#[test]
fn stalled_clients_grow_the_buffer_pool() {
    const CLIENTS: usize = 8;
    const CHUNK: usize = 16 * 1024;
    let server = ServerProcess::spawn(bin(), &[]).expect("spawn");
    let stalling: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let hog = server.client();
            // Small client-side socket buffers, so that less of what the
            // client sends hides in the kernel rather than in the pool. Not
            // under two segments for receiving: loopback's MSS is 64 KiB,
            // and with less the client withholds window updates (silly
            // window avoidance) and the echo crawls in seconds-long steps.
            for (opt, size) in [(libc::SO_RCVBUF, 256 * 1024), (libc::SO_SNDBUF, 16 * 1024)] {
                let size: libc::c_int = size;
                // SAFETY: a valid socket, and a pointer to a c_int of the
                // length given.
                let r = unsafe {
                    libc::setsockopt(
                        hog.as_raw_fd(),
                        libc::SOL_SOCKET,
                        opt,
                        (&size as *const libc::c_int).cast(),
                        size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
                assert_eq!(r, 0, "setsockopt");
            }
            thread::spawn(move || {
                let mut hog = hog;
                // A write that makes no progress for this long: the
                // server has stopped reading us.
                hog.set_write_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let mut sent = 0;
                loop {
                    let chunk: Vec<u8> = (sent..sent + CHUNK).map(|i| pattern(c, i)).collect();
                    match hog.write(&chunk) {
                        Ok(n) => sent += n,
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                        {
                            return (hog, sent);
                        }
                        Err(e) => panic!("client {c}: write after {sent} bytes: {e}"),
                    }
                    assert!(sent < 64 * 1024 * 1024, "client {c}: never stalled");
                }
            })
        })
        .collect();
    let hogs: Vec<_> = stalling.into_iter().map(|t| t.join().unwrap()).collect();

    let mut fresh = server.client();
    fresh.write_all(b"not starved").unwrap();
    let mut back = [0u8; 11];
    fresh
        .read_exact(&mut back)
        .expect("a fresh client beside the stalled ones");
    assert_eq!(&back, b"not starved");

    for (c, (mut hog, sent)) in hogs.into_iter().enumerate() {
        hog.shutdown(Shutdown::Write).unwrap();
        let mut echoed = Vec::with_capacity(sent);
        hog.read_to_end(&mut echoed)
            .unwrap_or_else(|e| panic!("client {c}: reading the echo back: {e}"));
        assert_eq!(echoed.len(), sent, "client {c}: bytes back");
        if let Some(i) = (0..sent).find(|&i| echoed[i] != pattern(c, i)) {
            panic!("client {c}: byte {i} differs");
        }
    }
    let status = server.terminate().expect("terminate");
    assert!(status.success(), "exit status {status}");
}

// ANCHOR: seccomp
/// Installs, in the child before `exec`, a seccomp filter under which
/// `io_uring_setup(2)` fails with `errno` and every other syscall runs:
/// what a container runtime's default profile does (with `EPERM`), or a
/// kernel built without io_uring (`ENOSYS`).
fn forbid_io_uring(cmd: &mut Command, errno: i32) {
    // Four classic-BPF instructions over `struct seccomp_data`, whose first
    // field (offset 0) is the syscall number.
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let mut filter = [
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_io_uring_setup as u32,
        },
        stmt(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA),
        ),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    // The filter array is moved into the closure, so the pointer in `prog`
    // is valid while the kernel copies the program (the second call).
    // SAFETY: runs between fork and exec; it makes two `prctl(2)` calls,
    // async-signal-safe, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_mut_ptr(),
            };
            // Required to install a filter without CAP_SYS_ADMIN.
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
// ANCHOR_END: seccomp

/// Where `io_uring_setup` is refused (`EPERM`: seccomp or
/// `kernel.io_uring_disabled`; `ENOSYS`: no io_uring in the kernel), the
/// server exits with status 1 and one line on stderr that says io_uring
/// is unavailable, rather than crashing or serving nothing.
#[test]
fn unavailable_io_uring_is_one_line_and_exit_1() {
    for errno in [libc::EPERM, libc::ENOSYS] {
        let mut cmd = Command::new(bin());
        cmd.args(["--addr", "127.0.0.1:0"]);
        forbid_io_uring(&mut cmd, errno);
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("spawn under the seccomp filter");
        // stderr reaches EOF when the process exits: wait on that, bounded.
        let mut stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut err = String::new();
            let _ = stderr.read_to_string(&mut err);
            let _ = tx.send(err);
        });
        let Ok(err) = rx.recv_timeout(Duration::from_secs(10)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("errno {errno}: still running 10 s without io_uring");
        };
        let status = child.wait().expect("wait");
        assert_eq!(
            status.code(),
            Some(1),
            "errno {errno}: {status}, stderr {err:?}"
        );
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "errno {errno}: stderr {err:?}");
        assert!(
            lines[0].starts_with("echo-io-uring: io_uring is unavailable"),
            "errno {errno}: {err:?}"
        );
        let named = std::io::Error::from_raw_os_error(errno).to_string();
        assert!(lines[0].contains(&named), "errno {errno}: {err:?}");
    }
}
