//! `echo-prefork`: parse the common flags, bind, fork the workers, hand out connections.

fn main() -> std::process::ExitCode {
    echo_protocol::run(&echo_prefork::MODEL, echo_prefork::serve)
}
