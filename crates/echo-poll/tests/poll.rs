//! Black-box tests of `echo-poll`: the shared conformance suite (with no
//! expected limit: `beyond-fd-setsize` passes) and fault suite, the command
//! line, `--max-conns`, shutdown, and what this model does by hand:
//! back-pressure at `OUTPUT_CAP`, and keeping its `pollfd` array and its
//! connections in step while clients leave in any order.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use echo_conformance::{ServerProcess, tree};
use echo_poll::{OUTPUT_CAP, READ_CHUNK};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_echo-poll"))
}

fn terminate(server: ServerProcess) {
    let status = server.terminate().expect("terminate");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn conforms() {
    echo_conformance::assert_conforms(bin(), &[]);
}

/// No descriptor limit and nothing else this design cannot meet: a
/// declared limit would hide a regression in `beyond-fd-setsize`.
#[test]
fn declares_no_limits() {
    let limits = echo_conformance::expected_limits(bin()).expect("--expected-limits");
    assert!(limits.is_empty(), "{limits:?}");
}

/// The storm (`EMFILE` with 64 descriptors: the spare descriptor keeps
/// the loop from spinning), `--max-conns`, a 1 GiB soak, SIGTERM
/// mid-transfer.
#[test]
fn survives_the_faults() {
    echo_conformance::assert_survives_faults(bin(), &[]);
}

#[test]
fn rejects_bad_input() {
    echo_conformance::cli::assert_rejects_bad_input(bin());
}

#[test]
fn enforces_max_conns() {
    echo_conformance::limits::assert_max_conns_enforced(bin(), &[]);
}

#[test]
fn shuts_down_gracefully() {
    echo_conformance::limits::assert_graceful_shutdown(bin(), &[]);
}

/// A client that never reads fills its echo up to `OUTPUT_CAP`, then the
/// server drops `POLLIN` from its entry and the client's writes stall;
/// meanwhile another client is served, and once the first one reads,
/// every byte comes back in order.
#[test]
fn back_pressure_stops_a_client_that_does_not_read() {
    let server = ServerProcess::spawn(bin(), &[]).expect("spawn");
    let mut hog = server.client();
    // No progress for this long means the server stopped reading us.
    hog.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // The server's cap and one read, plus the kernel's buffers on both
    // sides (loopback autotuning keeps each well under 8 MiB): past this
    // the server is reading without bound.
    let ceiling = OUTPUT_CAP + READ_CHUNK + 4 * (8 << 20);
    let byte = |i: usize| (i % 253) as u8;
    let mut offered = 0;
    let stalled = loop {
        if offered > ceiling {
            break false;
        }
        let chunk: Vec<u8> = (offered..offered + 32 * 1024).map(byte).collect();
        match hog.write(&chunk) {
            Ok(n) => offered += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break true;
            }
            Err(e) => panic!("write failed after {offered} bytes: {e}"),
        }
    };
    assert!(
        stalled,
        "{offered} bytes taken from a client that never reads"
    );

    let mut other = server.client();
    other.write_all(b"still served").unwrap();
    let mut back = [0u8; 12];
    other
        .read_exact(&mut back)
        .expect("a second client is served");
    assert_eq!(&back, b"still served");

    hog.shutdown(Shutdown::Write).unwrap();
    let mut echoed = Vec::with_capacity(offered);
    hog.read_to_end(&mut echoed).expect("the held echo");
    assert_eq!(echoed.len(), offered, "bytes echoed");
    let wrong = (0..offered).find(|&i| echoed[i] != byte(i));
    assert_eq!(wrong, None, "first wrong byte");
    terminate(server);
}

/// xorshift64*: a fixed seed makes a failing run repeatable, and the test
/// needs no dependency for it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// How a client of the crowd test leaves, if it does this round.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leave {
    Stay,
    /// Half-close after the message: the echo, then EOF.
    HalfClose,
    /// `SO_LINGER` 0 and close: a reset, which the server sees as
    /// `POLLHUP`/`POLLERR`, possibly with the message still unread.
    Reset,
}

/// Client `id`'s message in `round`: its length and every byte depend on
/// both, so an echo delivered to the wrong client, or a previous round's
/// echo, shows as a wrong byte.
fn message(id: u64, round: u64) -> Vec<u8> {
    let mut rng = Rng((id << 32 | round) ^ 0x9e37_79b9_7f4a_7c15);
    let len = 1 + rng.below(4096);
    (0..len).map(|_| rng.next() as u8).collect()
}

/// Closes `stream` with a reset instead of a FIN.
fn reset(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the descriptor is open (owned by `stream`), and `linger`
    // outlives the call with the size we pass.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
}

/// Swap-remove keeps the array and the connections in step: a crowd of
/// clients echo round after round while others leave among them in random
/// order (half-close or reset, several in the same wake-up) and newcomers
/// take their places and the freed descriptor numbers. Each round, every
/// client writes before any reads, so many entries are ready in one `poll`
/// at once. Every echo must come back to its own client, complete and in
/// order, and at the end the server must hold no descriptor for a client.
#[test]
fn clients_leaving_in_any_order_do_not_disturb_the_rest() {
    const CROWD: usize = 120;
    const ROUNDS: u64 = 30;
    let server = ServerProcess::spawn(bin(), &[]).expect("spawn");
    // The readiness line comes before the loop opens its spare descriptor,
    // so the baseline is read once a first client has had an echo: the
    // loop is running then, and holds exactly its own descriptors plus
    // this client's socket, which stays open to the end.
    let mut first = server.client();
    first.write_all(b"x").unwrap();
    let mut byte = [0u8; 1];
    first.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"x");
    let baseline = tree::counts(server.pid()).expect("server alive").fds;
    let mut rng = Rng(0x5eed_0f5a_11ee);
    let mut next_id = 0u64;
    let mut crowd: Vec<(u64, TcpStream)> = Vec::new();
    let (mut echoes, mut left) = (0u64, 0u64);

    for round in 0..ROUNDS {
        while crowd.len() < CROWD {
            crowd.push((next_id, server.client()));
            next_id += 1;
        }
        rng.shuffle(&mut crowd);
        let mut staying: Vec<(u64, TcpStream, Leave)> = Vec::new();
        for (id, mut stream) in crowd.drain(..) {
            let leave = match rng.below(10) {
                0 => Leave::HalfClose,
                1 => Leave::Reset,
                _ => Leave::Stay,
            };
            stream
                .write_all(&message(id, round))
                .unwrap_or_else(|e| panic!("client {id}, round {round}: write: {e}"));
            match leave {
                Leave::Stay => {}
                Leave::HalfClose => stream.shutdown(Shutdown::Write).unwrap(),
                Leave::Reset => {
                    reset(stream);
                    left += 1;
                    continue;
                }
            }
            staying.push((id, stream, leave));
        }
        // Read back in another order than written, so the server's order
        // of service cannot line up with ours by chance.
        rng.shuffle(&mut staying);
        for (id, mut stream, leave) in staying {
            let want = message(id, round);
            let mut got = vec![0u8; want.len()];
            stream.read_exact(&mut got).unwrap_or_else(|e| {
                panic!(
                    "client {id}, round {round}: {} bytes expected: {e}",
                    want.len()
                )
            });
            if let Some(at) = (0..want.len()).find(|&k| got[k] != want[k]) {
                panic!("client {id}, round {round}: byte {at} is not its own echo");
            }
            echoes += 1;
            if leave == Leave::Stay {
                crowd.push((id, stream));
                continue;
            }
            let mut rest = Vec::new();
            stream
                .read_to_end(&mut rest)
                .unwrap_or_else(|e| panic!("client {id}: no EOF after its half-close: {e}"));
            assert!(
                rest.is_empty(),
                "client {id}: {} bytes after its echo",
                rest.len()
            );
            left += 1;
        }
    }
    assert!(
        left > ROUNDS,
        "only {left} clients left: the test did not churn"
    );
    drop(crowd);

    // Every client is gone; the server closes each socket as it sees the
    // EOF or the reset, within a wake-up or two. Bounded: a descriptor
    // still held after this is a connection that left the array but not
    // the table, or the other way round.
    let deadline = Instant::now() + Duration::from_secs(10);
    let held = loop {
        let fds = tree::counts(server.pid()).expect("server alive").fds;
        if fds <= baseline || Instant::now() >= deadline {
            break fds;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        held <= baseline,
        "{held} descriptors held after every client left, {baseline} before any came"
    );
    drop(first);
    eprintln!("{echoes} echoes verified, {left} clients left during the rounds");
    terminate(server);
}
