//! `ex-fork-reaper`: the exercise's server; the code is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    echo_protocol::run(&ex_fork_reaper::MODEL, ex_fork_reaper::serve)
}
