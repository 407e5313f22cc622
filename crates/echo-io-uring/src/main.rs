//! `echo-io-uring`: parse the common flags, bind, run one io_uring loop.

fn main() -> std::process::ExitCode {
    echo_protocol::run(&echo_io_uring::MODEL, echo_io_uring::serve)
}
