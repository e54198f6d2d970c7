//! The command line. `main` parses it and calls [`run`]; each subcommand
//! lives in a file of its own:
//!
//! - `serve`, `healthcheck` ([`serve`]): the server and its container probe.
//! - `hook build`, `hook new` (`hook`): build a hook crate into a checked
//!   component; scaffold one from the example hooks.
//! - `try` (`try_`): the whole pipeline locally on files, no server; `render`
//!   draws the predictions over the image (SVG or HTML).
//! - `configure` (`configure`): upload a backend to a running server.
//! - `connect` (`connect`): register a backend in a Label Studio project.
//! - `backends list|show|delete` (`backends`): a server's backends.
//!
//! Shared by several: `tasks` (files → Label Studio tasks), `admin_api`
//! (the HTTP client for the admin routes), `model_args` (model flags).
//!
//! This is the binary's own code; the server it starts and talks to is the
//! `cls` library, which it uses like any other client would (the JSON it
//! reads back is typed by `cls::api`). This is the edge: errors are `anyhow`
//! here, while the library's are typed.
//! Results go to stdout (`--json` for scripts), errors and progress to
//! stderr, and secrets (flags or their environment variables) are never
//! printed.

mod admin_api;
mod backends;
mod configure;
mod connect;
mod hook;
mod model_args;
mod progress;
mod render;
mod serve;
mod tasks;
mod try_;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use cls::hooks::{Compilers, HookRuntime, RuntimeOptions};

use serve::ServeArgs;

/// Serve any MLflow ONNX model as a Label Studio ML backend, shaped by
/// sandboxed WebAssembly hooks.
#[derive(Debug, Parser)]
#[command(name = "configurable-ls-backend", version, about, after_help = TOP_EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

const TOP_EXAMPLES: &str = "\
A hook author's loop:
  configurable-ls-backend hook new my-hook --template detection
  configurable-ls-backend hook build my-hook
  configurable-ls-backend try --model layout_cdla.onnx --pre-hook my-hook --post-hook my-hook \\
      --label-config my-hook/label-config.xml page.png --render page.html
  configurable-ls-backend configure --server http://127.0.0.1:9090 --backend layout \\
      --model models:/layout/1 --pre-hook my-hook --post-hook my-hook
  configurable-ls-backend connect --label-studio http://localhost:8080 --project 3 \\
      --backend-url http://127.0.0.1:9090/backends/layout";

const SERVE_EXAMPLES: &str = "\
Examples:
  configurable-ls-backend serve
  configurable-ls-backend serve --host 127.0.0.1 --port 0 --state-dir /tmp/cls
  ADMIN_TOKEN=… configurable-ls-backend serve --port 9090";

const HEALTHCHECK_EXAMPLES: &str = "\
Example:
  configurable-ls-backend healthcheck --url http://127.0.0.1:9090/health";

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
    /// Exit 0 when the server at URL answers /health with status UP.
    #[command(after_help = HEALTHCHECK_EXAMPLES)]
    Healthcheck {
        /// The health URL to probe.
        #[arg(long, default_value = "http://127.0.0.1:9090/health")]
        url: String,
        /// Basic auth user, when the server guards /health with one: the
        /// same variable the server reads, so a container's HEALTHCHECK
        /// passes with basic auth on.
        #[arg(long, env = "BASIC_AUTH_USER")]
        basic_auth_user: Option<String>,
        /// Basic auth password (with BASIC_AUTH_USER).
        #[arg(long, env = "BASIC_AUTH_PASS", hide_env_values = true)]
        basic_auth_pass: Option<String>,
    },
    /// Build or scaffold hook crates.
    #[command(subcommand)]
    Hook(hook::HookCommand),
    /// Run model and hooks locally on images, text files or task JSON
    /// (no server, no Label Studio); print each prediction and whether Label
    /// Studio would accept it, and optionally draw it.
    #[command(after_help = try_::EXAMPLES)]
    Try(try_::TryArgs),
    /// Upload a backend (model reference, hooks, label config) to a running
    /// server, and print the URL to paste into Label Studio.
    #[command(after_help = configure::EXAMPLES)]
    Configure(configure::ConfigureArgs),
    /// Register a backend in a Label Studio project (creating the project
    /// if asked) and report whether Label Studio can reach it.
    #[command(after_help = connect::EXAMPLES)]
    Connect(connect::ConnectArgs),
    /// List, inspect or delete a server's backends.
    #[command(subcommand)]
    Backends(backends::BackendsCommand),
}

/// Runs one command.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve::serve(args).await,
        Command::Healthcheck {
            url,
            basic_auth_user,
            basic_auth_pass,
        } => {
            let credentials = basic_auth_user
                .filter(|user| !user.is_empty())
                .zip(basic_auth_pass.filter(|pass| !pass.is_empty()));
            serve::healthcheck(&url, credentials).await
        }
        Command::Hook(command) => hook::run(command).await,
        Command::Try(args) => try_::run(args).await,
        Command::Configure(args) => configure::run(args).await,
        Command::Connect(args) => connect::run(args).await,
        Command::Backends(command) => backends::run(command).await,
    }
}

/// Prints a line to stdout, like `println!`, but a reader that went away
/// (`… | head`) ends the program quietly instead of panicking.
macro_rules! say {
    () => {
        $crate::cli::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::write_line(format_args!($($arg)*))
    };
}
use say;

/// The body of [`say!`].
fn write_line(line: std::fmt::Arguments) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Prints a JSON value to stdout, pretty.
fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    say!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A user-facing setting: `None` when absent or blank (an exported but
/// empty environment variable counts as unset).
fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// Where the command line keeps compiled hooks, models and downloads
/// between runs: `$XDG_CACHE_HOME/configurable-ls-backend/cli` (or under
/// `~/.cache`).
fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("configurable-ls-backend/cli")
}

/// Hook instances one command runs at once.
const CLI_MAX_HOOK_INSTANCES: u32 = 4;

/// The hook sandbox as the server builds it, sized for one command, with
/// compiled components cached in [`cache_dir`] so a second run of an
/// unchanged hook is fast. No baseline tier: a command runs its tasks and
/// exits, so Cranelift's code (the one that gets cached) is compiled first
/// and the only one compiled.
fn hook_options() -> RuntimeOptions {
    RuntimeOptions {
        artefact_dir: Some(cache_dir().join("hooks")),
        max_instances: CLI_MAX_HOOK_INSTANCES,
        compilers: Compilers::Cranelift,
        ..RuntimeOptions::default()
    }
}

/// A hook sandbox of its own ([`hook_options`]), for commands that only
/// compile or check hooks.
fn hook_runtime() -> anyhow::Result<Arc<HookRuntime>> {
    Ok(Arc::new(HookRuntime::new(hook_options())?))
}

/// Log lines on stderr for commands that run hooks: warnings, and what the
/// hooks themselves log (`RUST_LOG` overrides).
fn init_cli_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,ort=error,cls::hooks::host=debug")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .try_init();
}
