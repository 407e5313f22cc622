//! Black-box tests of `echo-iterative`: the shared conformance suite (with
//! this model's declared limits), the command line, shutdown, and the
//! head-of-line blocking that is the point of the model.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::path::Path;
use std::time::Duration;

use echo_conformance::ServerProcess;

const TIMEOUT: Duration = Duration::from_secs(5);

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_echo-iterative"))
}

#[test]
fn conforms_within_its_declared_limits() {
    echo_conformance::assert_conforms(bin(), &[]);
}

#[test]
fn declares_the_cases_that_need_concurrency() {
    let limits = echo_conformance::expected_limits(bin()).expect("--expected-limits");
    assert_eq!(limits, echo_iterative::MODEL.expected_limits);
    // Exactly the cases and faults that need two clients served at once;
    // a new one added here must be explained in the model's chapter.
    assert_eq!(
        limits,
        [
            "concurrent-200",
            "reset-isolation",
            "slow-reader",
            "idle-500",
            "beyond-fd-setsize",
            "max-conns"
        ]
    );
}

#[test]
fn rejects_bad_input() {
    echo_conformance::cli::assert_rejects_bad_input(bin());
}

/// Shutdown as this model can do it. The shared check also wants new
/// clients turned away while one is still open, which a server blocked in
/// that client's `read` cannot do: they wait in the backlog like any other
/// client would. What it must do: finish the open client, then exit 0
/// without serving anyone else.
#[test]
fn shuts_down_after_the_open_client() {
    let mut server = ServerProcess::spawn(bin(), &[]).expect("spawn");
    let mut open = server.client();
    let mut buf = [0u8; 6];
    open.write_all(b"before").unwrap();
    open.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"before");

    server.sigterm().expect("SIGTERM");
    open.write_all(b"after!").unwrap();
    open.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"after!", "the open client must be allowed to finish");
    assert!(
        server.wait_timeout(Duration::from_millis(300)).is_none(),
        "exited while a client was still connected"
    );

    open.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    open.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "unexpected bytes after EOF: {rest:?}");
    let status = server
        .wait_timeout(Duration::from_secs(3))
        .expect("still running 3 s after its last client left");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn shuts_down_at_once_when_idle() {
    let mut server = ServerProcess::spawn(bin(), &[]).expect("spawn");
    server.sigterm().expect("SIGTERM");
    // Well inside GRACE_PERIOD, after which the process would exit anyway:
    // the model itself must have returned.
    let status = server
        .wait_timeout(Duration::from_secs(2))
        .expect("still running 2 s after SIGTERM with no client");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn serves_one_client_at_a_time() {
    let server = ServerProcess::spawn(bin(), &[]).expect("spawn");
    let mut first = server.client();
    first.write_all(b"first").unwrap();
    let mut buf = [0u8; 5];
    first.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"first");

    // The second connection completes in the kernel's backlog, but nobody
    // reads it while the first client is connected.
    let mut second = server.client();
    second.write_all(b"second").unwrap();
    second
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut one = [0u8; 1];
    match second.read(&mut one) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("second client served while the first is connected: {other:?}"),
    }

    // Once the first client leaves, the second one gets its echo.
    first.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    first.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "unexpected bytes after EOF: {rest:?}");
    second.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut buf = [0u8; 6];
    second.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"second");

    drop((first, second));
    let status = server.terminate().expect("terminate");
    assert!(status.success(), "exit status {status}");
}
