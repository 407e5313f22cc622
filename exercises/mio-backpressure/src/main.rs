//! `ex-mio-backpressure`: the exercise's server; the code is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    echo_protocol::run(&ex_mio_backpressure::MODEL, ex_mio_backpressure::serve)
}
