//! Black-box tests of `echo-mio`: the shared conformance suite and fault
//! suite, the command line, `--max-conns`, shutdown, and the two things an
//! edge-triggered loop gets wrong most easily: resuming a client stopped at
//! `OUTPUT_CAP` once its output drains (no new event comes for the bytes
//! already waiting), and surviving `EMFILE` without spinning or stalling.

use std::path::Path;

use echo_mio::OUTPUT_CAP;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_echo-mio"))
}

#[test]
fn conforms() {
    echo_conformance::assert_conforms(bin(), &[]);
}

#[test]
fn survives_the_faults() {
    echo_conformance::assert_survives_faults(bin(), &[]);
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

/// A client that sends without reading is stopped once its unsent echo
/// reaches `OUTPUT_CAP` (plus what the kernel buffers hold), other clients
/// are served meanwhile, and nothing it sent is lost.
///
/// The last part is the edge-triggered trap: when the server stops at the
/// cap, the rest of the client's bytes are already in the server's receive
/// buffer or held back by a closed window, so no readable event will ever
/// come for them. A loop that waits for one stalls here once the client
/// starts reading; `read_to_end` then times out.
#[test]
fn stops_reading_a_client_that_does_not_read() {
    echo_conformance::limits::assert_back_pressure(bin(), &[], OUTPUT_CAP);
}

/// With only 64 descriptors, 100 clients exhaust them. The pending
/// connections must not make the loop spin, nor (edge-triggered, one event
/// for the whole backlog) be forgotten in the backlog; the surplus
/// clients are closed rather than left hanging, and once the clients leave
/// a new one is served.
#[test]
fn survives_running_out_of_descriptors() {
    echo_conformance::limits::assert_sheds_when_out_of_descriptors(bin(), &[]);
}
