//! `ex-tokio-clear-ready`: the exercise's server; the code is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    echo_protocol::run(&ex_tokio_clear_ready::MODEL, ex_tokio_clear_ready::serve)
}
