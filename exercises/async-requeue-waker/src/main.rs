//! `ex-async-requeue-waker`: the exercise's server; the code is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    echo_protocol::run(
        &ex_async_requeue_waker::MODEL,
        ex_async_requeue_waker::serve,
    )
}
