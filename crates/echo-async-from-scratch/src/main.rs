//! `echo-async-from-scratch`: parse the common flags, bind, run the echo as
//! async fns on the runtime of this crate.

fn main() -> std::process::ExitCode {
    echo_protocol::run(
        &echo_async_from_scratch::MODEL,
        echo_async_from_scratch::serve,
    )
}
