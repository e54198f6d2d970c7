//! What the `cli_*` tests share: running the real binary as a process with
//! a hermetic environment, reading its output, and the example hooks'
//! labeling configs (from their READMEs, as `hook new` takes them).
#![allow(dead_code)] // each test file uses its own part

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_configurable-ls-backend");

/// Environment variables the CLI reads that must not leak in from the
/// developer's shell.
const SCRUBBED: &[&str] = &[
    "ADMIN_TOKEN",
    "BASIC_AUTH_USER",
    "BASIC_AUTH_PASS",
    "CLS_SERVER_URL",
    "CLS_HOOK_SDK",
    "LABEL_STUDIO_URL",
    "LABEL_STUDIO_HOST",
    "LABEL_STUDIO_API_KEY",
    "LABEL_STUDIO_ACCESS_TOKEN",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "RUST_LOG",
];

/// The CLI with a scrubbed environment, ONNX Runtime found, and its cache
/// (compiled hooks, models, downloads) under cargo's test scratch dir
/// rather than the developer's home.
pub fn cli() -> Command {
    let mut command = Command::new(BIN);
    for name in SCRUBBED {
        command.env_remove(name);
    }
    command
        .env(
            "XDG_CACHE_HOME",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-cache"),
        )
        .env("RUST_BACKTRACE", "0")
        .current_dir(harness::repo_root())
        .stdin(Stdio::null());
    if let Some(lib) = harness::ort_library() {
        command.env("ORT_DYLIB_PATH", lib);
    }
    command
}

/// A finished command.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Panics, showing both streams, unless the command succeeded.
    pub fn ok(self) -> Self {
        assert!(
            self.status.success(),
            "command failed ({}):\n{self}",
            self.status
        );
        self
    }

    /// Panics unless the command failed with an error on stderr.
    pub fn failed(self) -> Self {
        assert!(
            !self.status.success(),
            "command succeeded but should not have:\n{self}"
        );
        assert!(
            self.stderr.contains("error: "),
            "no error line on stderr:\n{self}"
        );
        self
    }

    /// Stdout as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        )
    }
}

/// Runs the CLI with `args` (after [`cli`]'s set-up) and waits.
pub fn run<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    run_command(cli().args(args))
}

/// Runs a prepared command and waits.
pub fn run_command(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"));
    Output {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The labeling config an example hook's README documents.
pub fn example_config(krate: &str) -> String {
    let readme = harness::repo_root()
        .join("examples/hooks")
        .join(krate)
        .join("README.md");
    let text =
        std::fs::read_to_string(&readme).unwrap_or_else(|e| panic!("{}: {e}", readme.display()));
    let start = text
        .find("```xml\n")
        .unwrap_or_else(|| panic!("{}: no xml block", readme.display()))
        + 7;
    let len = text[start..]
        .find("```")
        .unwrap_or_else(|| panic!("unterminated xml block"));
    text[start..start + len].to_owned()
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

/// An example hook crate's folder.
pub fn example_crate(krate: &str) -> PathBuf {
    harness::repo_root().join("examples/hooks").join(krate)
}

/// Result types drawn as shapes over an image.
pub const SHAPE_TYPES: &[&str] = &[
    "rectanglelabels",
    "rectangle",
    "polygonlabels",
    "polygon",
    "keypointlabels",
    "keypoint",
    "ellipselabels",
    "ellipse",
    "brushlabels",
    "brush",
];

/// Every result item of every prediction of a task in `try --json` output.
pub fn result_items(task: &Value) -> Vec<Value> {
    task["predictions"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["result"].as_array().cloned().unwrap_or_default())
        .collect()
}
