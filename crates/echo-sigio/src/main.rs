//! `echo-sigio`: block the I/O signals before any thread exists, then parse
//! the common flags, bind, run the signal-driven loop.

fn main() -> std::process::ExitCode {
    // Before `run` starts the shutdown thread, so that it inherits the mask
    // and no thread but the loop's ever sees these signals.
    if let Err(e) = echo_sigio::block_io_signals() {
        eprintln!("echo-sigio: cannot block the I/O signals: {e}");
        return std::process::ExitCode::from(echo_protocol::EXIT_FAILURE);
    }
    echo_protocol::run(&echo_sigio::MODEL, echo_sigio::serve)
}
