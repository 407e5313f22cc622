//! Black-box tests of `echo-async-from-scratch`: the shared conformance
//! suite and the fault suite, the command line, `--max-conns`, shutdown,
//! and what this runtime has to get right by itself: back-pressure through
//! the `.await` on a write, surviving `EMFILE` without spinning, no lost
//! wake-up under edge-triggered epoll (a FIN that came with the last bytes,
//! a turn cut short by the fairness bound), and a busy client that must
//! not keep the single thread to itself.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::path::Path;
use std::sync::mpsc;
use std::thread;

use echo_async_from_scratch::READ_CHUNK;
use echo_conformance::{FaultTarget, ServerProcess, run_faults};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_echo-async-from-scratch"))
}

fn terminate(server: ServerProcess) {
    let status = server.terminate().expect("terminate");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn conforms() {
    echo_conformance::assert_conforms(bin(), &[]);
}

#[test]
fn survives_faults() {
    let target = FaultTarget::Binary {
        bin: bin().to_path_buf(),
        args: Vec::new(),
    };
    let report =
        run_faults(&target, &[], None, &mut |o| eprintln!("{o}")).expect("the fault suite runs");
    assert!(report.ok(), "faults:\n{report}");
}

#[test]
fn declares_no_limits() {
    let limits = echo_conformance::expected_limits(bin()).expect("--expected-limits");
    assert!(limits.is_empty(), "{limits:?}");
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

/// A connection writes all it read before it reads again, so a client that
/// never reads is stopped after one read's worth of unsent output (plus the
/// kernel's buffers), the other clients are served meanwhile, and nothing
/// is lost once it reads.
#[test]
fn stops_reading_a_client_that_does_not_read() {
    echo_conformance::limits::assert_back_pressure(bin(), &[], READ_CHUNK);
}

/// With only 64 descriptors, 100 clients exhaust them: the surplus are
/// closed with the spare descriptor rather than left hanging, the accept
/// future does not spin, and once the clients leave a new one is served.
#[test]
fn survives_running_out_of_descriptors() {
    echo_conformance::limits::assert_sheds_when_out_of_descriptors(bin(), &[]);
}

/// Every byte comes back whatever the shape of the input: one 1 MiB write,
/// 8 MiB in one write and 16 MiB in 256 KiB writes (turns cut short by the
/// fairness bound, resumed by the task's own wake-up, or the last bytes
/// never come back), with the half-close early or late.
#[test]
fn echoes_every_byte() {
    let server = ServerProcess::spawn(bin(), &[]).expect("spawn");
    for close_early in [false, true] {
        echo_conformance::limits::assert_streams_back(
            &server,
            1024 * 1024,
            1024 * 1024,
            close_early,
        );
        echo_conformance::limits::assert_streams_back(
            &server,
            8 * 1024 * 1024,
            8 * 1024 * 1024,
            close_early,
        );
        echo_conformance::limits::assert_streams_back(
            &server,
            16 * 1024 * 1024,
            256 * 1024,
            close_early,
        );
    }
    terminate(server);
}

/// Clients that send a short message and half-close at once: the FIN is
/// often in the socket with the bytes when the server reads them, so the
/// read is short and the next is an EOF that no new edge will announce. A
/// reactor that took "short read" for "drained" without remembering the
/// `EPOLLRDHUP` it saw would leave these clients waiting (5 s read
/// timeout each) for the end of their echo.
#[test]
fn a_fin_behind_the_last_bytes_is_not_lost() {
    let server = ServerProcess::spawn(bin(), &[]).expect("spawn");
    let mut clients = Vec::new();
    for i in 0..200 {
        let mut c = server.client();
        let msg = format!("message {i} and then the FIN");
        c.write_all(msg.as_bytes()).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        clients.push((c, msg));
    }
    for (i, (mut c, msg)) in clients.into_iter().enumerate() {
        let mut back = Vec::new();
        c.read_to_end(&mut back)
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert_eq!(back, msg.as_bytes(), "client {i}");
    }
    terminate(server);
}

/// One client streaming without pause beside another that makes round
/// trips: both are served, and every byte of the stream comes back. A
/// runtime that polls one task until it finishes fails this. Whether it
/// also catches a task that never yields after `READS_PER_TURN` reads
/// depends on the streamer outrunning the server; on loopback it did not
/// for echo-epoll's unbounded drain (notes/model-epoll.md). The bound is
/// on the round trips (5 s read timeout each), not their speed.
#[test]
fn a_busy_client_does_not_starve_others() {
    let server = ServerProcess::spawn(bin(), &[]).expect("spawn");
    let (stop, stopped) = mpsc::channel::<()>();
    let mut busy = server.client();
    let mut busy_writer = busy.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let chunk = vec![b'b'; 256 * 1024];
        let mut sent = 0u64;
        while stopped.try_recv().is_err() {
            busy_writer.write_all(&chunk).expect("busy write");
            sent += chunk.len() as u64;
        }
        busy_writer.shutdown(Shutdown::Write).unwrap();
        sent
    });
    let reader = thread::spawn(move || {
        let mut got = 0u64;
        let mut buf = vec![0; 256 * 1024];
        loop {
            match busy.read(&mut buf).expect("busy read") {
                0 => return got,
                n => got += n as u64,
            }
        }
    });
    let mut probe = server.client();
    for i in 0..50 {
        let msg = format!("round trip {i}");
        probe.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0; msg.len()];
        probe
            .read_exact(&mut back)
            .unwrap_or_else(|e| panic!("round trip {i} beside a busy client: {e}"));
        assert_eq!(back, msg.as_bytes());
    }
    stop.send(()).unwrap();
    let sent = writer.join().unwrap();
    let got = reader.join().unwrap();
    assert_eq!(got, sent, "the busy client's bytes back");
    drop(probe);
    terminate(server);
}
