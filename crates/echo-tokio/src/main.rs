//! `echo-tokio`: parse the common flags and `--flavor`/`--workers`, bind,
//! run a task per connection on a tokio runtime.

fn main() -> std::process::ExitCode {
    echo_protocol::run(&echo_tokio::MODEL, echo_tokio::serve)
}
