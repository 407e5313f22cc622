//! `echo-thread-per-client`: parse the common flags, bind, spawn a thread per client.

fn main() -> std::process::ExitCode {
    echo_protocol::run(
        &echo_thread_per_client::MODEL,
        echo_thread_per_client::serve,
    )
}
