//! `echo-poll`: parse the common flags, bind, run one `poll(2)` loop.

fn main() -> std::process::ExitCode {
    echo_protocol::run(&echo_poll::MODEL, echo_poll::serve)
}
