//! `ex-poll-swap-remove`: the exercise's server; the code is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    echo_protocol::run(&ex_poll_swap_remove::MODEL, ex_poll_swap_remove::serve)
}
