//! The common flags, and how a model adds its own.

use std::ffi::OsString;
use std::net::{SocketAddr, ToSocketAddrs};

use clap::{Args, Command, FromArgMatches};

use crate::Model;

/// Loopback only unless the user asks for more.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7000";
/// Default `--max-conns`: half the 20,000 open-files hard limit these
/// machines allow, leaving room for a client on the same host.
pub const DEFAULT_MAX_CONNS: u32 = 10_000;

/// Flags every `echo-<model>` binary accepts.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Address to listen on, HOST:PORT (port 0 picks a free port)
    #[arg(long, default_value = DEFAULT_ADDR, value_parser = parse_addr, value_name = "HOST:PORT")]
    pub addr: SocketAddr,
    /// Most clients served at once; further connections are closed at once
    #[arg(long, default_value_t = DEFAULT_MAX_CONNS, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_conns: u32,
    /// Log connection events to stderr
    #[arg(long)]
    pub verbose: bool,
    /// Print the conformance cases this model cannot meet by design, then exit
    #[arg(long, hide = true)]
    pub expected_limits: bool,
}

/// The model flags of a model that has none.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct NoFlags {}

/// Accepts `1.2.3.4:80`, `[::1]:80` and `localhost:80`; the first address a
/// name resolves to is used.
fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    if !s.contains(':') {
        return Err(format!("expected HOST:PORT, got '{s}'"));
    }
    match s.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("'{s}' resolves to no address")),
        Err(e) => Err(format!("'{s}' is not a valid HOST:PORT ({e})")),
    }
}

pub(crate) fn parse<A: Args + FromArgMatches>(
    model: &Model,
    argv: impl IntoIterator<Item = OsString>,
) -> Result<(CommonArgs, A), clap::Error> {
    let cmd = Command::new(model.name)
        .about("An echo server: every byte a client sends comes back, in order.");
    let cmd = A::augment_args(CommonArgs::augment_args(cmd));
    let matches = cmd.try_get_matches_from(argv)?;
    Ok((
        CommonArgs::from_arg_matches(&matches)?,
        A::from_arg_matches(&matches)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Model = Model {
        name: "echo-test",
        expected_limits: &[],
    };

    #[derive(Debug, Args)]
    struct Extra {
        #[arg(long, default_value_t = 1)]
        threads: u32,
    }

    fn parse_ok(args: &[&str]) -> (CommonArgs, Extra) {
        let argv = std::iter::once("echo-test")
            .chain(args.iter().copied())
            .map(OsString::from);
        parse::<Extra>(&M, argv).expect("should parse")
    }

    fn parse_err(args: &[&str]) -> clap::Error {
        let argv = std::iter::once("echo-test")
            .chain(args.iter().copied())
            .map(OsString::from);
        parse::<Extra>(&M, argv).expect_err("should be rejected")
    }

    #[test]
    fn defaults_and_model_flags() {
        let (c, e) = parse_ok(&[]);
        assert_eq!(c.addr, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(c.max_conns, DEFAULT_MAX_CONNS);
        assert!(!c.verbose);
        assert_eq!(e.threads, 1);
        let (c, e) = parse_ok(&[
            "--addr",
            "localhost:0",
            "--max-conns",
            "5",
            "--threads",
            "4",
        ]);
        assert!(c.addr.ip().is_loopback());
        assert_eq!((c.max_conns, e.threads), (5, 4));
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        for args in [
            &["--bogus"][..],
            &["--addr", "nonsense"],
            &["--addr", "127.0.0.1:99999"],
            &["--max-conns", "0"],
            &["--max-conns", "-3"],
            &["--max-conns", "many"],
        ] {
            let err = parse_err(args);
            assert_eq!(err.exit_code(), 2, "{args:?} should exit 2");
        }
    }
}
