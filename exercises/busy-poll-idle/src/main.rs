//! `ex-busy-poll-idle`: the exercise's server; the code is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    echo_protocol::run(&ex_busy_poll_idle::MODEL, ex_busy_poll_idle::serve)
}
