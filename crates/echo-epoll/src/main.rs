//! `echo-epoll`: parse the common flags, bind, run one level-triggered epoll loop.

fn main() -> std::process::ExitCode {
    echo_protocol::run(&echo_epoll::MODEL, echo_epoll::serve)
}
