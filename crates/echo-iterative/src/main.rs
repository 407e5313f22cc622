//! `echo-iterative`: parse the common flags, bind, serve one client at a time.

fn main() -> std::process::ExitCode {
    echo_protocol::run(&echo_iterative::MODEL, echo_iterative::serve)
}
