//! `ex-select-write-interest`: the exercise's server; the code is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    echo_protocol::run(
        &ex_select_write_interest::MODEL,
        ex_select_write_interest::serve,
    )
}
