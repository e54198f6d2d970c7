//! Checks on the repository itself that need no server: the Dockerfile
//! (no Docker engine runs here, so it is linted, and every path it copies
//! must exist and reach the build context), and the hook SDK's copy of the
//! WIT.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use harness::{cache_dir, repo_root, require};

#[test]
fn dockerfile_lints_clean_and_every_copied_path_exists() {
    let hadolint = require!(
        "hadolint (installed by scripts/setup.sh)",
        Some(cache_dir().join("bin/hadolint")).filter(|p| p.is_file())
    );
    let output = std::process::Command::new("bash")
        .arg(repo_root().join("scripts/lint-dockerfile.sh"))
        .env("CLS_CACHE", cache_dir())
        .output()
        .expect("run scripts/lint-dockerfile.sh");
    assert!(
        output.status.success(),
        "{} found problems:\n{}{}",
        hadolint.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_hook_sdk_carries_the_wit_byte_for_byte() {
    let wit = files_under(&repo_root().join("wit"));
    let copy = files_under(&repo_root().join("hook-sdk/wit"));
    assert!(!wit.is_empty(), "wit/ holds no files");
    let names: BTreeSet<&PathBuf> = wit.keys().chain(copy.keys()).collect();
    let differing: Vec<String> = names
        .into_iter()
        .filter(|name| wit.get(*name) != copy.get(*name))
        .map(|name| name.display().to_string())
        .collect();
    assert!(
        differing.is_empty(),
        "hook-sdk/wit/ is not a copy of wit/ (differing: {}); the SDK builds against \
         its own copy so it stands alone outside a checkout. Resync it from the \
         repository root with: rm -r hook-sdk/wit && cp -r wit hook-sdk/wit",
        differing.join(", ")
    );
}

#[test]
fn the_server_names_the_wit_package_it_was_built_with() {
    let wit = std::fs::read_to_string(repo_root().join("wit/hooks.wit")).expect("wit/hooks.wit");
    let declared = format!("package {};", cls::hooks::WIT_PACKAGE);
    assert!(
        wit.lines().any(|line| line.trim() == declared),
        "wit/hooks.wit does not declare `{declared}`: update hooks::WIT_PACKAGE with the package version"
    );
}

/// Every file below `dir`, by path relative to it, with its bytes.
fn files_under(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let entries = std::fs::read_dir(&folder)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", folder.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let bytes = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                let relative = path.strip_prefix(dir).expect("below dir").to_path_buf();
                files.insert(relative, bytes);
            }
        }
    }
    files
}
