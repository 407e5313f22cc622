//! `ex-pool-deadlock`: the exercise's server; the code is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    echo_protocol::run(&ex_pool_deadlock::MODEL, ex_pool_deadlock::serve)
}
