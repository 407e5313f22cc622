//! `ex-chat-slow-member`: the exercise's server; the code is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    echo_protocol::run(&ex_chat_slow_member::MODEL, ex_chat_slow_member::serve)
}
