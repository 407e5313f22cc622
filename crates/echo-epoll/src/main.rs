//! `echo-epoll`: parse the common flags and `--edge-triggered`, `--threads`,
//! bind, run the epoll reactors.

fn main() -> std::process::ExitCode {
    echo_protocol::run(&echo_epoll::MODEL, echo_epoll::serve)
}
