//! A thread-per-client echo server that parses `--max-conns` and never
//! looks at it again.
//!
//! The bug: the limit is accepted on the command line (the common contract
//! parses it for every model) but the accept loop has no admission check,
//! so every connection gets a thread, however many are open. In real code
//! this is the cap that was "going to be added later", or one checked only
//! where connections are logged.
//!
//! Caught by the fault `max-conns` (the client past the limit is served).

use std::io;
use std::net::TcpListener;
use std::process::ExitCode;
use std::thread;

use echo_protocol::{Config, NoFlags, echo_until_eof};
use test_servers::{join_all, model, next_client};

fn serve(listener: TcpListener, config: &Config, _: NoFlags) -> io::Result<()> {
    config.log(format_args!("at most {} connections", config.max_conns));
    // Every client thread, so that shutdown can wait for them.
    let mut clients = Vec::new();
    while let Some(mut stream) = next_client(&listener, config)? {
        // BUG: no `if live >= config.max_conns { drop(stream); continue; }`.
        clients.push(thread::spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            let _ = echo_until_eof(&mut stream, &mut buf);
        }));
    }
    // Shutdown done right, so that the one bug above is the only one.
    join_all(clients);
    Ok(())
}

fn main() -> ExitCode {
    echo_protocol::run(&model("broken-ignores-max-conns"), serve)
}
