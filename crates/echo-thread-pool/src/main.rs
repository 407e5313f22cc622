//! `echo-thread-pool`: parse the common flags, bind, hand connections to a pool of workers.

fn main() -> std::process::ExitCode {
    echo_protocol::run(&echo_thread_pool::MODEL, echo_thread_pool::serve)
}
