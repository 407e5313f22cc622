//! `ex-io-uring-buffer-ownership`: the exercise's server; the code is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    echo_protocol::run(
        &ex_io_uring_buffer_ownership::MODEL,
        ex_io_uring_buffer_ownership::serve,
    )
}
