//! `echo-select`: parse the common flags, bind, run one `select(2)` loop.

fn main() -> std::process::ExitCode {
    echo_protocol::run(&echo_select::MODEL, echo_select::serve)
}
