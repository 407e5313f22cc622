//! `ex-epoll-edge-triggered`: the exercise's server; the code is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    echo_protocol::run(
        &ex_epoll_edge_triggered::MODEL,
        ex_epoll_edge_triggered::serve,
    )
}
