//! `configurable-ls-backend`: parse the command line and run the command
//! ([`cli`]); errors go to stderr with a non-zero exit. The server itself is
//! the `cls` library; this binary adds the command line around it.

// The command line's doc comments are its `--help` text, where `<NAME>`
// placeholders are the convention users read, not HTML.
#![allow(rustdoc::invalid_html_tags)]

mod cli;

use std::process::ExitCode;

use clap::Parser;

use cli::Cli;

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
