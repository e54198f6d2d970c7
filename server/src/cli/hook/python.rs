//! Python hooks: `hook build` on a folder holding `app.py` runs
//! [componentize-py] against our WIT world, with the `cls_hooks` SDK on its
//! path. The WIT and the SDK are embedded in this binary, so a hook folder
//! needs nothing but its own Python files.
//!
//! componentize-py does not build reproducibly (two builds of the same
//! sources differ), so each component is stamped with the hash of its
//! sources ([`cls::hooks::stamp`]): that hash, not the bytes, names it in a
//! backend's `model_version`, and a folder whose component already carries
//! the current hash is not rebuilt.
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

use cls::hooks::{HookKind, stamp};
use sha2::{Digest, Sha256};

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
    "entities.py",
    "errors.py",
    "export.py",
    "image.py",
    "jsonenc.py",
    "labelconfig.py",
    "log.py",
    "native.py",
    "ops.py",
    "polygon.py",
    "results.py",
    "rle.py",
    "tensor.py",
    "text.py",
);

/// Whether `dir` is a Python hook (an `app.py` and no `Cargo.toml`).
fn is_python_hook(dir: &Path) -> bool {
    dir.join(format!("{APP_MODULE}.py")).is_file() && !dir.join("Cargo.toml").is_file()
}

/// The Python hooks `hook build <dir>` builds: `dir` itself when it is one,
/// else its `pre/` and `post/` folders that are (the layout of `hook new
/// --lang python`).
pub fn hook_folders(dir: &Path) -> Vec<PathBuf> {
    if is_python_hook(dir) {
        return vec![dir.to_path_buf()];
    }
    ["pre", "post"]
        .iter()
        .map(|sub| dir.join(sub))
        .filter(|sub| is_python_hook(sub))
        .collect()
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

/// Builds the Python hook in `dir` into `dir/target/<name>.wasm`, stamped
/// with the hash of its sources ([`cls::hooks::stamp`]); when the component
/// there already carries the hash of the current sources, nothing is run.
pub async fn build(dir: &Path) -> anyhow::Result<(String, PathBuf)> {
    let name = component_name(dir);
    let out = dir.join("target").join(format!("{name}.wasm"));
    let world = world_of_app(dir)?;
    let componentize = find_componentize_py()?;
    let version = componentize_version(&componentize).await?;
    let sources = source_sha256(dir, world, &version)?;
    let current = std::fs::read(&out).ok().and_then(|b| stamp::read(&b));
    if current.as_deref() == Some(sources.as_str()) {
        eprintln!(
            "componentize-py: {} is up to date (sources unchanged: {})",
            out.display(),
            &sources[..12]
        );
        return Ok((name, out));
    }
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
    let mut component =
        std::fs::read(&out).with_context(|| format!("cannot read {}", out.display()))?;
    stamp::append(&mut component, &sources);
    std::fs::write(&out, &component).with_context(|| format!("cannot write {}", out.display()))?;
    eprintln!(
        "componentize-py: built {} in {:.1} s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok((name, out))
}

/// `componentize-py --version`: part of what a build depends on.
async fn componentize_version(componentize: &Path) -> anyhow::Result<String> {
    let output = tokio::process::Command::new(componentize)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {}", componentize.display()))?;
    if !output.status.success() {
        bail!("{} --version failed", componentize.display());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The SHA-256 of everything a build of `dir` reads: the world, the
/// toolchain's version, the WIT, the SDK, and every file of the hook's
/// folder except `target/` and hidden or cache folders, in a fixed order.
fn source_sha256(
    dir: &Path,
    world: HookKind,
    componentize_version: &str,
) -> anyhow::Result<String> {
    let mut hasher = Sha256::new();
    let mut add = |name: &str, contents: &[u8]| {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update((contents.len() as u64).to_le_bytes());
        hasher.update(contents);
    };
    add("world", world.to_string().as_bytes());
    add("componentize-py", componentize_version.as_bytes());
    add("wit/hooks.wit", WIT.as_bytes());
    for (file, contents) in SDK {
        add(&format!("cls_hooks/{file}"), contents.as_bytes());
    }
    for (relative, path) in hook_files(dir)? {
        let contents =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        add(&format!("hook/{relative}"), &contents);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The hook folder's files, sorted by their `/`-separated relative path;
/// `target/`, `__pycache__/` and hidden entries are not sources.
fn hook_files(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    let mut pending = vec![(String::new(), dir.to_owned())];
    while let Some((prefix, folder)) = pending.pop() {
        let entries = std::fs::read_dir(&folder)
            .with_context(|| format!("cannot list {}", folder.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", folder.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let skipped = name.starts_with('.')
                || name == "__pycache__"
                || (prefix.is_empty() && name == "target");
            if skipped {
                continue;
            }
            let relative = format!("{prefix}{name}");
            let kind = entry
                .file_type()
                .with_context(|| format!("cannot read {}", entry.path().display()))?;
            if kind.is_dir() {
                pending.push((format!("{relative}/"), entry.path()));
            } else if kind.is_file() {
                files.push((relative, entry.path()));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `my-hook` → `my_hook`, as cargo names components; `my-hook/pre` →
/// `my_hook_pre`, as the Rust scaffold names its crates.
fn component_name(dir: &Path) -> String {
    let name_of = |d: &Path| d.file_name().map(|n| n.to_string_lossy().into_owned());
    let own = name_of(dir).unwrap_or_else(|| "hook".into());
    let raw = match dir.parent().and_then(name_of) {
        Some(parent) if own == "pre" || own == "post" => format!("{parent}-{own}"),
        _ => own,
    };
    raw.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn unpack_wit_and_sdk(scratch: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let wit_dir = scratch.join("wit");
    let sdk_dir = scratch.join("sdk");
    write_wit_and_sdk(&wit_dir, &sdk_dir)?;
    Ok((wit_dir, sdk_dir))
}

/// Writes `hooks.wit` into `wit_dir` and the `cls_hooks` package into
/// `sdk_dir`, creating both; returns the package folder.
fn write_wit_and_sdk(wit_dir: &Path, sdk_dir: &Path) -> anyhow::Result<PathBuf> {
    let package = sdk_dir.join("cls_hooks");
    for dir in [wit_dir, package.as_path()] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let wit = wit_dir.join("hooks.wit");
    std::fs::write(&wit, WIT).with_context(|| format!("cannot write {}", wit.display()))?;
    for (file, contents) in SDK {
        let path = package.join(file);
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(package)
}

/// `hook sdk --python <dir>`: the SDK this binary builds Python hooks
/// with, written out as `<dir>/cls_hooks/` and `<dir>/wit/hooks.wit`, so an
/// editor can resolve it and unit tests can import it.
pub fn write_sdk(dir: &Path) -> anyhow::Result<()> {
    let wit_dir = dir.join("wit");
    let package = write_wit_and_sdk(&wit_dir, dir)?;
    println!("wrote the cls_hooks SDK to {}", package.display());
    println!(
        "wrote its WIT world to {}",
        wit_dir.join("hooks.wit").display()
    );
    println!(
        "to import it outside a component, generate the bindings it wraps:\n  \
         componentize-py -d {} -w post-hook bindings {}",
        wit_dir.display(),
        dir.display()
    );
    Ok(())
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

    fn hash(dir: &Path) -> String {
        source_sha256(dir, HookKind::Post, "componentize-py 0.25.1").expect("hash")
    }

    #[test]
    fn the_source_hash_follows_the_sources_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::write(root.join("app.py"), "print('a')\n").expect("write");
        std::fs::create_dir_all(root.join("lib")).expect("mkdir");
        std::fs::write(root.join("lib/util.py"), "X = 1\n").expect("write");
        let first = hash(root);
        assert_eq!(first.len(), 64);

        // Build output, caches and hidden files are not sources.
        for dir in ["target", "__pycache__", ".git", "lib/__pycache__"] {
            std::fs::create_dir_all(root.join(dir)).expect("mkdir");
            std::fs::write(root.join(dir).join("x"), "noise").expect("write");
        }
        assert_eq!(hash(root), first);

        std::fs::write(root.join("lib/util.py"), "X = 2\n").expect("write");
        let changed = hash(root);
        assert_ne!(changed, first, "a module changed");
        assert_ne!(
            source_sha256(root, HookKind::Post, "componentize-py 0.26.0").expect("hash"),
            changed,
            "another toolchain"
        );
        assert_ne!(
            source_sha256(root, HookKind::Pre, "componentize-py 0.25.1").expect("hash"),
            changed,
            "another world"
        );
    }

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
        assert_eq!(component_name(Path::new("x/my-ocr/pre")), "my_ocr_pre");
        assert_eq!(component_name(Path::new("x/my-ocr/post")), "my_ocr_post");
    }
}
