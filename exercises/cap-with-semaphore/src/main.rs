//! `ex-cap-with-semaphore`: the exercise's server; the code is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    echo_protocol::run(&ex_cap_with_semaphore::MODEL, ex_cap_with_semaphore::serve)
}
