//! `hook build`, `hook new` and `hook sdk`, and what `try` and `configure` need to
//! accept a hook crate wherever a `.wasm` component is expected
//! ([`load_arg`]).

mod build;
mod new;
mod python;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Subcommand;

pub use build::BuiltHook;

use cls::hooks::{HookKind, HookRuntime};

/// `hook` subcommands.
#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// Build a hook crate (or a workspace of them) for wasm32-wasip2 in
    /// release mode, or a Python hook (app.py) with componentize-py; check
    /// that each component exports the pre-hook or the post-hook world, and
    /// print world, size and sha256.
    #[command(after_help = build::EXAMPLES)]
    Build(build::BuildArgs),
    /// Scaffold hook crates from one of the example hooks; they build as
    /// they are.
    #[command(after_help = new::EXAMPLES)]
    New(new::NewArgs),
    /// Write out the SDK this binary builds hooks with: `--python <dir>`
    /// writes the `cls_hooks` package and the WIT world, for editors and
    /// unit tests.
    #[command(after_help = SDK_EXAMPLES)]
    Sdk(SdkArgs),
}

const SDK_EXAMPLES: &str = "\
Examples:
  configurable-ls-backend hook sdk --python .sdk
  componentize-py -d .sdk/wit -w post-hook bindings .sdk
  PYTHONPATH=.sdk python3 -m pytest tests/     # unit tests that import cls_hooks";

/// `hook sdk` flags.
#[derive(Debug, clap::Args)]
pub struct SdkArgs {
    /// The folder to write `cls_hooks/` and `wit/hooks.wit` into (created
    /// if missing; the SDK's own files are overwritten).
    #[arg(long, value_name = "DIR")]
    python: PathBuf,
}

/// Runs a `hook` subcommand.
pub async fn run(command: HookCommand) -> anyhow::Result<()> {
    match command {
        HookCommand::Build(args) => build::run(args).await,
        HookCommand::New(args) => new::run(args),
        HookCommand::Sdk(args) => python::write_sdk(&args.python),
    }
}

/// The component a `--pre-hook`/`--post-hook` argument names: a `.wasm`
/// file as it is, or a crate (or workspace) folder, built first, whose one
/// component of `kind` is taken.
pub async fn load_arg(
    path: &Path,
    kind: HookKind,
    runtime: &HookRuntime,
) -> anyhow::Result<Vec<u8>> {
    if path.is_file() {
        return std::fs::read(path).with_context(|| format!("cannot read {}", path.display()));
    }
    if !path.is_dir() {
        bail!(
            "{} is neither a .wasm file nor a hook crate folder",
            path.display()
        );
    }
    let built = build::build(path, runtime).await?;
    let mut matching: Vec<&BuiltHook> = built.iter().filter(|b| b.world == kind).collect();
    match matching.len() {
        1 => {
            let hook = matching.remove(0);
            eprintln!(
                "using {} ({kind}, {})",
                hook.path.display(),
                build::size(hook.size)
            );
            std::fs::read(&hook.path)
                .with_context(|| format!("cannot read {}", hook.path.display()))
        }
        0 => bail!(
            "{} builds no {kind} component (it builds: {})",
            path.display(),
            list(&built)
        ),
        _ => bail!(
            "{} builds several {kind} components ({}): pass the crate folder or .wasm of one",
            path.display(),
            list(&matching.into_iter().cloned().collect::<Vec<_>>())
        ),
    }
}

fn list(built: &[BuiltHook]) -> String {
    if built.is_empty() {
        return "nothing".to_owned();
    }
    built
        .iter()
        .map(|b| format!("{} = {}", b.package, b.world))
        .collect::<Vec<_>>()
        .join(", ")
}
