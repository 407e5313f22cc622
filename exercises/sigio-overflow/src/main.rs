//! `ex-sigio-overflow`: the exercise's server; the code is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    // Before `run` starts the shutdown thread, so that it inherits the mask.
    if let Err(e) = ex_sigio_overflow::block_io_signals() {
        eprintln!("ex-sigio-overflow: cannot block the I/O signals: {e}");
        return ExitCode::from(echo_protocol::EXIT_FAILURE);
    }
    echo_protocol::run(&ex_sigio_overflow::MODEL, ex_sigio_overflow::serve)
}
