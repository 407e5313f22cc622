//! Black-box tests of `echo-thread-per-client`: the shared conformance
//! suite, the command line, `--max-conns`, shutdown, and clients served
//! independently of each other.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::path::Path;

use echo_conformance::ServerProcess;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_echo-thread-per-client"))
}

#[test]
fn conforms() {
    echo_conformance::assert_conforms(bin(), &[]);
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

/// The lesson of the iterative model, reversed: a client that stays
/// connected does not hold up the ones that come after it.
#[test]
fn an_open_client_does_not_block_others() {
    let server = ServerProcess::spawn(bin(), &[]).expect("spawn");
    let mut idle = server.client();
    idle.write_all(b"idle").unwrap();
    let mut buf = [0u8; 4];
    idle.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"idle");

    for round in 0..3u8 {
        let mut other = server.client();
        let msg = [b'a' + round; 1000];
        other.write_all(&msg).unwrap();
        other.shutdown(Shutdown::Write).unwrap();
        let mut echoed = Vec::new();
        other.read_to_end(&mut echoed).unwrap();
        assert_eq!(echoed, msg, "round {round}");
    }

    // The idle client is still served after all that.
    idle.write_all(b"still").unwrap();
    let mut buf = [0u8; 5];
    idle.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"still");

    drop(idle);
    let status = server.terminate().expect("terminate");
    assert!(status.success(), "exit status {status}");
}
