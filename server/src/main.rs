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

/// Task polls between two looks at the sockets. A hook call yields to tokio
/// after each millisecond of guest time, so under hook load tokio's default
/// (61) left new connections and `/health` unnoticed for ~61 ms per step of a
/// request (`/health` p99 51-102 ms in the polygons bench); at 4 it is
/// 4-6 ms, with no measurable cost in throughput (docs/benchmarks.md).
const EVENT_INTERVAL: u32 = 4;

fn main() -> ExitCode {
    // Before tokio starts its threads: see the function's docs.
    cls::budget::limit_allocator_arenas();
    let command = Cli::parse().command;
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .event_interval(EVENT_INTERVAL)
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
