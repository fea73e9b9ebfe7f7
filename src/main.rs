//! The `pinproxy` binary: parses the command line and dispatches. In this branch only the
//! toolkit commands (`pin`, `export`, `keygen`) are wired; `run` and `check` come with the proxy.

use std::process::ExitCode;

use clap::Parser;
use pinproxy::cli::{Cli, Command};
use pinproxy::tool;

const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let result = match &cli.command {
        Some(Command::Pin(args)) => tool::pin_command(args, &mut out, &mut err),
        Some(Command::Export(args)) => tool::export_command(args, &mut out, &mut err),
        Some(Command::Keygen(args)) => tool::keygen_command(args, &mut out, &mut err),
        Some(Command::Run(_)) | Some(Command::Check(_)) | None => {
            eprintln!("error: `run` and `check` are not part of this build");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match result.map_err(anyhow::Error::from) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            drop(err);
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
