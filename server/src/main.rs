//! `configurable-ls-backend`: parse the command line and run the command
//! (`cls::cli`); errors go to stderr with a non-zero exit.

use std::process::ExitCode;

use clap::Parser;
use cls::cli::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    match cli::run(Cli::parse().command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
