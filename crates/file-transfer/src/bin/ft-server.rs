//! `ft-server --dir DIR [--addr A] [--max-file-size BYTES]`: parse, bind,
//! run the loop in `file_transfer::server`.

fn main() -> std::process::ExitCode {
    echo_protocol::run(&file_transfer::SERVER, file_transfer::server::serve)
}
