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

use echo_protocol::{Config, Model, NoFlags, accept_error_is_transient, echo_until_eof};

fn serve(listener: TcpListener, config: &Config, _: NoFlags) -> io::Result<()> {
    config.log(format_args!("at most {} connections", config.max_conns));
    // Every client thread, so that shutdown can wait for them. (Never
    // pruned: a few bytes per connection ever served, fine for a server
    // that lives for one test.)
    let mut clients = Vec::new();
    loop {
        let (mut stream, _) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if accept_error_is_transient(&e) => continue,
            Err(e) => return Err(e),
        };
        if config.shutdown.requested() {
            break;
        }
        // BUG: no `if live >= config.max_conns { drop(stream); continue; }`.
        clients.push(thread::spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            let _ = echo_until_eof(&mut stream, &mut buf);
        }));
    }
    finish(clients);
    Ok(())
}

/// Shutdown done right, so that the one bug above is the only one: open
/// connections finish (the contract's shutdown thread ends the process
/// when the grace period is over, whatever is still open).
fn finish<T>(clients: Vec<thread::JoinHandle<T>>) {
    for client in clients {
        let _ = client.join();
    }
}

fn main() -> ExitCode {
    echo_protocol::run(
        &Model {
            name: "broken-ignores-max-conns",
            expected_limits: &[],
        },
        serve,
    )
}
