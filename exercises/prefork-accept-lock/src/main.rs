//! `ex-prefork-accept-lock`: the exercise's server; the code is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    echo_protocol::run(
        &ex_prefork_accept_lock::MODEL,
        ex_prefork_accept_lock::serve,
    )
}
