//! Checks on the repository itself that need no server: the Dockerfile
//! (no Docker engine runs here, so it is linted, and every path it copies
//! must exist and reach the build context).

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
