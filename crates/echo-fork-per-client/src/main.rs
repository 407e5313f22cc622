//! `echo-fork-per-client`: parse the common flags, bind, fork a process per client.

fn main() -> std::process::ExitCode {
    echo_protocol::run(&echo_fork_per_client::MODEL, echo_fork_per_client::serve)
}
