//! `echo-busy-poll`: parse the common flags and `--idle-sleep-us`, bind, sweep every socket in a loop.

fn main() -> std::process::ExitCode {
    echo_protocol::run(&echo_busy_poll::MODEL, echo_busy_poll::serve)
}
