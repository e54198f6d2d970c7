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

fn main() -> ExitCode {
    // Before tokio starts its threads: see the function's docs.
    cls::budget::limit_allocator_arenas();
    let command = Cli::parse().command;
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(cli::run(command)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
