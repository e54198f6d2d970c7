//! `hook build <dir>`: `cargo build --release --target wasm32-wasip2` for a
//! Rust hook crate, componentize-py for a Python hook (`app.py`, see
//! [`super::python`]) or for each of a folder's Python hooks (`pre/app.py`,
//! `post/app.py`, as `hook new --lang python` lays them out); then each
//! `.wasm` is loaded the way the server loads an upload, to learn which
//! world it exports; world, size and sha256 are printed.
//!
//! The components are found from cargo's own artifact messages
//! (`--message-format=json`), so a custom target dir, a workspace or a crate
//! inside one all work. Cargo's progress and compiler errors go to stderr
//! as usual.

use crate::cli::say;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncBufReadExt as _;

use super::python;
use crate::cli::print_json;
use cls::hooks::{HookKind, HookLoadError, HookRuntime};

/// The target hooks are built for.
pub const TARGET: &str = "wasm32-wasip2";

pub const EXAMPLES: &str = "\
Examples:
  configurable-ls-backend hook build examples/hooks/classification-post
  configurable-ls-backend hook build my-hook            # a workspace: builds pre/ and post/
  configurable-ls-backend hook build my-hook/post --json
  configurable-ls-backend hook build my-python-hook     # a folder with app.py
  configurable-ls-backend hook build my-python-hooks    # builds pre/app.py and post/app.py

Rust hooks need the wasm32-wasip2 target: rustup target add wasm32-wasip2
Python hooks need componentize-py 0.25.1: pip install componentize-py==0.25.1";

/// `hook build` flags.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The hook crate's folder (holding Cargo.toml), a workspace of hook
    /// crates, a Python hook's folder (holding app.py), or a folder of
    /// Python hooks (pre/app.py, post/app.py).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Print JSON: {"hooks": [{"crate", "path", "world", "size", "sha256", "source_sha256"}]}
    /// (`source_sha256`: Python hooks only, null for Rust).
    #[arg(long)]
    json: bool,
}

/// A component cargo built, checked.
#[derive(Debug, Clone)]
pub struct BuiltHook {
    /// The library (crate) name cargo built it from.
    pub package: String,
    pub path: PathBuf,
    pub world: HookKind,
    pub size: usize,
    pub sha256: String,
    /// The source stamp, for Python hooks ([`cls::hooks::stamp`]).
    pub source_sha256: Option<String>,
}

pub async fn run(args: BuildArgs) -> anyhow::Result<()> {
    let runtime = crate::cli::hook_runtime()?;
    let built = build(&args.dir, &runtime).await?;
    if args.json {
        let hooks: Vec<Value> = built
            .iter()
            .map(|b| {
                json!({
                    "crate": b.package,
                    "path": b.path,
                    "world": b.world.to_string(),
                    "size": b.size,
                    "sha256": b.sha256,
                    "source_sha256": b.source_sha256,
                })
            })
            .collect();
        return print_json(&json!({ "hooks": hooks }));
    }
    for b in &built {
        say!(
            "{:<9}  {:>10}  sha256 {}  {}",
            b.world.to_string(),
            size(b.size),
            b.sha256,
            b.path.display()
        );
    }
    Ok(())
}

/// Builds every hook component of the crate (or workspace) at `dir`.
pub async fn build(dir: &Path, runtime: &HookRuntime) -> anyhow::Result<Vec<BuiltHook>> {
    let dir = &std::path::absolute(dir).with_context(|| dir.display().to_string())?;
    let manifest = dir.join("Cargo.toml");
    let python_hooks = python::hook_folders(dir);
    let wasm_files = if manifest.is_file() {
        check_target_installed(dir)?;
        cargo_build(dir, &manifest).await?
    } else if !python_hooks.is_empty() {
        let mut built = Vec::with_capacity(python_hooks.len());
        for hook in &python_hooks {
            built.push(python::build(hook).await?);
        }
        built
    } else {
        bail!(
            "{} has neither a Cargo.toml nor an app.py (nor pre/app.py or post/app.py): pass \
             the folder of a Rust hook crate or of Python hooks (scaffold one with \
             `configurable-ls-backend hook new`)",
            dir.display()
        );
    };
    if wasm_files.is_empty() {
        bail!(
            "{} built no .wasm component: a hook crate needs `[lib] crate-type = [\"cdylib\"]`",
            dir.display()
        );
    }
    let mut built = Vec::with_capacity(wasm_files.len());
    for (package, path) in wasm_files {
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let world = world_of(runtime, Bytes::from(bytes.clone()))
            .await
            .with_context(|| format!("{} is not a usable hook", path.display()))?;
        built.push(BuiltHook {
            package,
            path,
            world,
            size: bytes.len(),
            sha256: hex::encode(Sha256::digest(&bytes)),
            source_sha256: cls::hooks::stamp::read(&bytes),
        });
    }
    Ok(built)
}

/// `cargo build`, returning each `.wasm` artifact with its package name.
async fn cargo_build(dir: &Path, manifest: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = tokio::process::Command::new(&cargo)
        .args(["build", "--release", "--target", TARGET])
        .arg("--message-format=json-render-diagnostics")
        .arg("--manifest-path")
        .arg(manifest)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "cannot run {}: install Rust (https://rustup.rs), then `rustup target add {TARGET}`",
                cargo.to_string_lossy()
            )
        })?;
    let stdout = child.stdout.take().context("cargo's stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut wasm = Vec::new();
    while let Some(line) = lines.next_line().await.context("reading cargo's output")? {
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let is_cdylib = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"));
        if !is_cdylib {
            continue;
        }
        let package = message["target"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for file in message["filenames"].as_array().into_iter().flatten() {
            if let Some(file) = file.as_str().filter(|f| f.ends_with(".wasm")) {
                wasm.push((package.clone(), PathBuf::from(file)));
            }
        }
    }
    let status = child.wait().await.context("waiting for cargo")?;
    if !status.success() {
        bail!(
            "cargo build failed in {} (its errors are above)",
            dir.display()
        );
    }
    Ok(wasm)
}

/// Fails early, with the fix, when the toolchain that would build `dir`
/// lacks the wasm target (cargo's own error is a confusing "can't find
/// crate for `core`").
fn check_target_installed(dir: &Path) -> anyhow::Result<()> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = std::process::Command::new(&rustc)
        .args(["--print", "sysroot"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .with_context(|| {
            format!(
                "cannot run {}: install Rust (https://rustup.rs), then `rustup target add {TARGET}`",
                rustc.to_string_lossy()
            )
        })?;
    if !output.status.success() {
        bail!(
            "`{} --print sysroot` failed: {}",
            rustc.to_string_lossy(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if !sysroot.join("lib/rustlib").join(TARGET).is_dir() {
        bail!(
            "the {TARGET} target is not installed for the Rust toolchain in {} ({}): \
             run `rustup target add {TARGET}`",
            dir.display(),
            sysroot.display()
        );
    }
    Ok(())
}

/// Which world a component exports, by loading it as the server would.
async fn world_of(runtime: &HookRuntime, bytes: Bytes) -> anyhow::Result<HookKind> {
    let as_post = match runtime.load(HookKind::Post, bytes.clone()).await {
        Ok(_) => return Ok(HookKind::Post),
        Err(HookLoadError::WrongWorld { message, .. }) => message,
        Err(e) => return Err(e.into()),
    };
    match runtime.load(HookKind::Pre, bytes).await {
        Ok(_) => Ok(HookKind::Pre),
        Err(HookLoadError::WrongWorld { message, .. }) => bail!(
            "it exports neither the post-hook world ({as_post}) nor the pre-hook world ({message}); \
             export one with hook_sdk::export_post_hook! or hook_sdk::export_pre_hook!"
        ),
        Err(e) => Err(e.into()),
    }
}

/// A byte count for people.
pub fn size(bytes: usize) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else if bytes < 1 << 20 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
    }
}
