//! `ex-iterative-to-threads`: the exercise's server; the code is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    echo_protocol::run(
        &ex_iterative_to_threads::MODEL,
        ex_iterative_to_threads::serve,
    )
}
