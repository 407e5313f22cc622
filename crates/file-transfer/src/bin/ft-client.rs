//! `ft-client [--addr A] upload FILE [--name N] | download NAME [--out PATH] | list`.
//! One line on stdout on success; one line on stderr and exit status 1 on
//! failure, 2 on bad arguments.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use file_transfer::client;

#[derive(Parser)]
#[command(
    name = "ft-client",
    about = "Upload, download and list files on an ft-server."
)]
struct Cli {
    /// The server's address.
    #[arg(long, default_value = echo_protocol::DEFAULT_ADDR)]
    addr: SocketAddr,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send FILE; stored under its file name, or under --name.
    Upload {
        file: PathBuf,
        #[arg(long)]
        name: Option<String>,
    },
    /// Fetch NAME into ./NAME, or into --out; written only once verified.
    Download {
        name: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the stored files, `<size> <name>` per line.
    List,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ft-client: {e}");
            ExitCode::from(echo_protocol::EXIT_FAILURE)
        }
    }
}

fn run(cli: Cli) -> Result<(), client::Error> {
    match cli.command {
        Command::Upload { file, name } => {
            let name = match name {
                Some(n) => n,
                None => file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .ok_or_else(|| format!("{}: no usable file name; give --name", file.display()))?
                    .to_string(),
            };
            // Checked here too, so that a bad name fails before the file
            // is read; the server's check is the one that counts.
            file_transfer::proto::check_name(&name)?;
            let reply = client::upload_file(cli.addr, &name, &file)?;
            println!(
                "uploaded {name}: {} bytes, sha256 {}",
                reply.size.unwrap_or(0),
                reply.sha256.unwrap_or_default()
            );
        }
        Command::Download { name, out } => {
            file_transfer::proto::check_name(&name)?;
            let out = out.unwrap_or_else(|| PathBuf::from(&name));
            let reply = client::download_to(cli.addr, &name, &out)?;
            println!(
                "downloaded {name} to {}: {} bytes, sha256 {} verified",
                out.display(),
                reply.size.unwrap_or(0),
                reply.sha256.unwrap_or_default()
            );
        }
        Command::List => {
            for (name, size) in client::list(cli.addr)? {
                println!("{size} {name}");
            }
        }
    }
    Ok(())
}
