//! `chat`: the chat server; the code is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    echo_protocol::run(&chat::MODEL, chat::serve)
}
