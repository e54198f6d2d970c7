//! Python hooks: `hook build` on a folder holding `app.py` runs
//! [componentize-py] against our WIT world, with the `cls_hooks` SDK on its
//! path. The WIT and the SDK are embedded in this binary, so a hook folder
//! needs nothing but its own Python files.
//!
//! componentize-py is found as `$CLS_COMPONENTIZE_PY`, in the project's
//! cached venv (`scripts/build-python-hooks.sh` installs it there), or on
//! `PATH`.
//!
//! [componentize-py]: https://github.com/bytecodealliance/componentize-py

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context as _, bail};

use cls::hooks::HookKind;

/// The componentize-py release hooks are built and tested with.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// The module componentize-py loads: `app.py` in the hook folder.
pub const APP_MODULE: &str = "app";

/// The SDK's copy of the WIT, the one the Rust SDK and
/// `scripts/build-python-hooks.sh` build against.
const WIT: &str = include_str!("../../../../hook-sdk/wit/hooks.wit");

macro_rules! sdk_files {
    ($($file:literal),* $(,)?) => {
        &[$(($file, include_str!(concat!("../../../../hook-sdk/python/cls_hooks/", $file)))),*]
    };
}

/// The `cls_hooks` package, file by file.
const SDK: &[(&str, &str)] = sdk_files!(
    "__init__.py",
    "_wit.py",
    "context.py",
    "errors.py",
    "export.py",
    "image.py",
    "jsonenc.py",
    "labelconfig.py",
    "log.py",
    "ops.py",
    "results.py",
    "rle.py",
    "tensor.py",
);

/// Whether `dir` is a Python hook (an `app.py` and no `Cargo.toml`).
pub fn is_python_hook(dir: &Path) -> bool {
    dir.join(format!("{APP_MODULE}.py")).is_file() && !dir.join("Cargo.toml").is_file()
}

/// The world `app.py` exports: a pre-hook when it uses `export_pre_hook`.
pub fn world_of_app(dir: &Path) -> anyhow::Result<HookKind> {
    let app = dir.join(format!("{APP_MODULE}.py"));
    let source =
        std::fs::read_to_string(&app).with_context(|| format!("cannot read {}", app.display()))?;
    Ok(if source.contains("export_pre_hook") {
        HookKind::Pre
    } else {
        HookKind::Post
    })
}

/// Builds the Python hook in `dir` into `dir/target/<name>.wasm`.
pub async fn build(dir: &Path) -> anyhow::Result<(String, PathBuf)> {
    let name = component_name(dir);
    let out = dir.join("target").join(format!("{name}.wasm"));
    let world = world_of_app(dir)?;
    let componentize = find_componentize_py()?;
    let scratch = tempfile::tempdir().context("cannot create a temporary folder")?;
    let (wit_dir, sdk_dir) = unpack_wit_and_sdk(scratch.path())?;
    std::fs::create_dir_all(dir.join("target"))
        .with_context(|| format!("cannot create {}", dir.join("target").display()))?;
    eprintln!("componentize-py: building {} ({world})…", dir.display());
    let started = Instant::now();
    // `-q`: its success line would land on stdout, which `--json` owns.
    let status = tokio::process::Command::new(&componentize)
        .arg("-q")
        .arg("-d")
        .arg(&wit_dir)
        .args(["-w", &world.to_string(), "componentize", "-p"])
        .arg(&sdk_dir)
        .arg("-p")
        .arg(dir)
        .arg(APP_MODULE)
        .arg("-o")
        .arg(&out)
        // The bytecode goes into the component, not into the hook's folder.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .status()
        .await
        .with_context(|| format!("cannot run {}", componentize.display()))?;
    if !status.success() {
        bail!(
            "componentize-py failed on {} (its errors are above)",
            dir.display()
        );
    }
    eprintln!(
        "componentize-py: built {} in {:.1} s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok((name, out))
}

/// `my-hook` → `my_hook`, as cargo names components.
fn component_name(dir: &Path) -> String {
    let raw = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "hook".into());
    raw.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn unpack_wit_and_sdk(scratch: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let wit_dir = scratch.join("wit");
    let sdk_dir = scratch.join("sdk");
    let package = sdk_dir.join("cls_hooks");
    std::fs::create_dir_all(&wit_dir)?;
    std::fs::create_dir_all(&package)?;
    std::fs::write(wit_dir.join("hooks.wit"), WIT)?;
    for (file, contents) in SDK {
        std::fs::write(package.join(file), contents)?;
    }
    Ok((wit_dir, sdk_dir))
}

fn find_componentize_py() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("CLS_COMPONENTIZE_PY").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let cached = std::env::var_os("HOME").map(|home| {
        PathBuf::from(home)
            .join(".cache/configurable-ls-backend/venv-componentize/bin/componentize-py")
    });
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("componentize-py"))
            .find(|p| p.is_file())
    });
    cached.filter(|p| p.is_file()).or(on_path).with_context(|| {
        format!(
            "componentize-py not found: `pip install componentize-py=={COMPONENTIZE_PY_VERSION}` \
             (or run scripts/build-python-hooks.sh once), or set CLS_COMPONENTIZE_PY"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_sdk_is_the_whole_package() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hook-sdk/python/cls_hooks");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("hook-sdk/python/cls_hooks")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".py"))
            .collect();
        on_disk.sort();
        let embedded: Vec<String> = SDK.iter().map(|(f, _)| (*f).to_owned()).collect();
        assert_eq!(
            embedded, on_disk,
            "add new SDK files to SDK in cli/hook/python.rs"
        );
    }

    #[test]
    fn component_names_follow_cargo() {
        assert_eq!(component_name(Path::new("x/my-hook.v2")), "my_hook_v2");
    }
}
