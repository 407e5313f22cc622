//! `echo-mio`: parse the common flags, bind, run one edge-triggered mio loop.

fn main() -> std::process::ExitCode {
    echo_protocol::run(&echo_mio::MODEL, echo_mio::serve)
}
