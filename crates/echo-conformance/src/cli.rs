//! The command-line half of the server contract, checked by running the
//! binary: bad arguments exit 2 with an `error:` line that names the
//! problem, `--help` exits 0, a runtime failure (address in use) exits 1 with
//! one line that names the address.
//!
//! Every run is bounded: a binary that starts serving instead of rejecting
//! its arguments is killed after 10 s and reported.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::{Finished, run_bounded};

const RUN_LIMIT: Duration = Duration::from_secs(10);

fn run(bin: &Path, args: &[&str]) -> Finished {
    let mut cmd = Command::new(bin);
    cmd.args(args);
    run_bounded(cmd, RUN_LIMIT).unwrap_or_else(|e| panic!("{e}"))
}

/// Asserts that `bin` run with `args` is a usage error: exit status 2, and
/// stderr's first line starts with `error:` and contains every word of
/// `must_name` (the flag, the rejected value). For a model's own flags; the
/// common ones are [`assert_rejects_bad_input`]'s.
pub fn assert_usage_error(bin: &Path, args: &[&str], must_name: &[&str]) {
    let name = bin.display();
    let out = run(bin, args);
    let shown = args.join(" ");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{name} {shown}: expected exit status 2, got {}; stderr:\n{}",
        out.status,
        out.stderr
    );
    let first = out.stderr.lines().next().unwrap_or("");
    assert!(
        first.starts_with("error:"),
        "{name} {shown}: stderr's first line should start with \"error:\", got {first:?}"
    );
    for word in must_name {
        assert!(
            first.contains(word),
            "{name} {shown}: the error should name {word:?}, got {first:?}"
        );
    }
}

/// Asserts, by running the binary: unknown flag (`--bogus`), malformed
/// address (`--addr nonsense`, `--addr 127.0.0.1:99999`), out-of-range
/// numbers (`--max-conns 0`, `--max-conns many`) each exit with status 2, and
/// stderr's first line starts with `error:` and names the problem (the flag
/// and the rejected value); `--help` exits 0; an address already in use
/// exits 1 with stderr being exactly one line that contains the address.
pub fn assert_rejects_bad_input(bin: &Path) {
    let name = bin.display();
    let bad: [(&[&str], &[&str]); 5] = [
        (&["--bogus"], &["--bogus"]),
        (&["--addr", "nonsense"], &["--addr", "nonsense"]),
        (
            &["--addr", "127.0.0.1:99999"],
            &["--addr", "127.0.0.1:99999"],
        ),
        (&["--max-conns", "0"], &["--max-conns", "0"]),
        (&["--max-conns", "many"], &["--max-conns", "many"]),
    ];
    for (args, must_name) in bad {
        assert_usage_error(bin, args, must_name);
    }

    let help = run(bin, &["--help"]);
    assert!(
        help.status.success(),
        "{name} --help: expected exit status 0, got {}; stderr:\n{}",
        help.status,
        help.stderr
    );
    assert!(
        help.stdout.contains("--addr"),
        "{name} --help should list --addr; stdout:\n{}",
        help.stdout
    );

    // std binds with SO_REUSEADDR too, but Linux still refuses a second
    // bind to a port that has a listening socket.
    let holder = TcpListener::bind("127.0.0.1:0").expect("binding a port to occupy");
    let taken = holder.local_addr().expect("local address").to_string();
    let out = run(bin, &["--addr", &taken]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{name} --addr {taken} (in use): expected exit status 1, got {}; stderr:\n{}",
        out.status,
        out.stderr
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].contains(&taken),
        "{name} --addr {taken} (in use): stderr should be exactly one line naming {taken}, \
         got:\n{}",
        out.stderr
    );
    drop(holder);
}
