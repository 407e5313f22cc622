//! Black-box tests of `echo-tokio`, in both flavours: the shared
//! conformance suite and fault suite, the command line (`--flavor` and
//! `--workers` included), `--max-conns`, shutdown, back-pressure at
//! `OUTPUT_CAP` (tokio's readiness cache must bring a task stopped at the
//! cap back to the bytes already waiting), `EMFILE` without a spin, and
//! the threads each flavour runs on.

use std::io::{Read, Write};
use std::path::Path;

use echo_conformance::ServerProcess;
use echo_tokio::OUTPUT_CAP;

/// The two flavours every general test runs in.
const FLAVOURS: [&[&str]; 2] = [&[], &["--flavor", "multi-thread", "--workers", "2"]];

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_echo-tokio"))
}

fn terminate(server: ServerProcess) {
    let status = server.terminate().expect("terminate");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn conforms() {
    echo_conformance::assert_conforms(bin(), FLAVOURS[0]);
}

#[test]
fn conforms_multi_thread() {
    echo_conformance::assert_conforms(bin(), FLAVOURS[1]);
}

#[test]
fn survives_the_faults() {
    echo_conformance::assert_survives_faults(bin(), FLAVOURS[0]);
}

#[test]
fn survives_the_faults_multi_thread() {
    echo_conformance::assert_survives_faults(bin(), FLAVOURS[1]);
}

#[test]
fn declares_no_limits() {
    let limits = echo_conformance::expected_limits(bin()).expect("--expected-limits");
    assert!(limits.is_empty(), "{limits:?}");
}

#[test]
fn rejects_bad_input() {
    use echo_conformance::cli::assert_usage_error;
    echo_conformance::cli::assert_rejects_bad_input(bin());
    assert_usage_error(bin(), &["--flavor", "bogus"], &["--flavor", "bogus"]);
    assert_usage_error(
        bin(),
        &["--flavor", "multi-thread", "--workers", "0"],
        &["--workers", "0"],
    );
    assert_usage_error(
        bin(),
        &["--flavor", "multi-thread", "--workers", "many"],
        &["--workers", "many"],
    );
    // Meaningless for one thread: refused, not ignored.
    assert_usage_error(bin(), &["--workers", "2"], &["--workers 2", "multi-thread"]);
    assert_usage_error(
        bin(),
        &["--flavor", "current-thread", "--workers", "2"],
        &["--workers 2", "multi-thread"],
    );
}

#[test]
fn enforces_max_conns() {
    for args in FLAVOURS {
        echo_conformance::limits::assert_max_conns_enforced(bin(), args);
    }
}

#[test]
fn shuts_down_gracefully() {
    for args in FLAVOURS {
        echo_conformance::limits::assert_graceful_shutdown(bin(), args);
    }
}

/// A client that sends without reading is stopped once its unsent echo
/// reaches `OUTPUT_CAP` (plus what the kernel buffers hold), other clients
/// are served meanwhile, and nothing it sent is lost. The last part rests
/// on the readiness the task keeps: stopped at the cap, it waits for
/// writability only, and the bytes already in its socket bring no new
/// event; tokio must still hold the socket ready for reading once the
/// output drains, which it does because no read answered `EAGAIN`.
#[test]
fn stops_reading_a_client_that_does_not_read() {
    for args in FLAVOURS {
        echo_conformance::limits::assert_back_pressure(bin(), args, OUTPUT_CAP);
    }
}

/// With only 64 descriptors, 100 clients exhaust them (the runtime's own
/// epoll and eventfd included). The accept loop must neither spin on
/// `EMFILE` (tokio's `accept` would return it with the connection still
/// in the backlog) nor leave the surplus clients hanging; once the
/// clients leave, a new one is served.
#[test]
fn survives_running_out_of_descriptors() {
    for args in FLAVOURS {
        echo_conformance::limits::assert_sheds_when_out_of_descriptors(bin(), args);
    }
}

/// The threads of the process, once a client has been served (the runtime
/// is built after the readiness line): the main thread and the contract's
/// shutdown thread, plus, in the multi-thread flavour, exactly `--workers`
/// workers. The current-thread flavour runs every task and the reactor on
/// the main thread.
#[test]
fn runs_on_one_thread_or_on_the_workers() {
    for (args, workers) in [
        (&[][..], 0),
        (&["--flavor", "multi-thread", "--workers", "3"], 3),
    ] {
        let server = ServerProcess::spawn(bin(), args).expect("spawn");
        let mut c = server.client();
        c.write_all(b"ping").unwrap();
        let mut back = [0u8; 4];
        c.read_exact(&mut back).expect("echo");
        assert_eq!(&back, b"ping");
        let counts = echo_conformance::tree::counts(server.pid()).expect("the server's counts");
        assert_eq!(counts.threads, 2 + workers, "{args:?}: threads");
        drop(c);
        terminate(server);
    }
}
