//! The configured backends: their names and configs ([`BackendName`],
//! [`BackendConfig`]), the live, swappable set ([`Backends`]), and their
//! persistence in the state directory ([`StateDir`]).
//!
//! A [`Backend`] is immutable once built. Reconfiguring builds a complete new
//! one and swaps the `Arc` in one step, so a request that already holds the
//! old one finishes on it. This module does not load models or compile
//! hooks; `admin` does that and hands finished backends here.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::fetch::FetchConfig;
use crate::hooks::{Hook, HookLimits};
use crate::labelconfig::LabelConfig;
use crate::model::OnnxModel;
use crate::secret::Secret;

/// The backend served at `/` (configured by `POST /configure`).
pub const ROOT_BACKEND: &str = "default";
/// Default number of tasks stacked into one inference.
pub const DEFAULT_BATCH_SIZE: usize = 16;

/// A backend's name: 1–64 characters of `[A-Za-z0-9_-]`, so it is safe in a
/// URL path and as a directory name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct BackendName(String);

/// A name that is not a valid [`BackendName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid backend name '{0}': use 1-64 letters, digits, '-' or '_' (it becomes part of a URL)"
)]
pub struct InvalidBackendName(String);

impl BackendName {
    /// Validates a name.
    pub fn new(name: &str) -> Result<Self, InvalidBackendName> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidBackendName(name.chars().take(80).collect()))
        }
    }

    /// The backend served at the root URL.
    pub fn root() -> Self {
        Self(ROOT_BACKEND.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL path Label Studio should use for this backend.
    pub fn url_path(&self) -> String {
        if self.0 == ROOT_BACKEND {
            "/".to_owned()
        } else {
            format!("/backends/{}", self.0)
        }
    }
}

impl fmt::Display for BackendName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for BackendName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        BackendName::new(&s).map_err(serde::de::Error::custom)
    }
}

/// The `config` part of a configure request, as users write it. Unknown keys
/// are rejected so typos do not pass silently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    #[serde(default)]
    pub model: ModelConfig,
    /// Reported to Label Studio; derived from the model and hooks when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    /// Used to validate predictions when a request carries no label config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_config: Option<String>,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub fetch: FetchSettings,
}

fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}

/// Where the model comes from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `models:/name/1`, `models:/name@alias`, `runs:/…`, a path, …; absent
    /// when the model is uploaded with the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// Sessions in the pool; default one per core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<usize>,
}

/// Per-call hook limits as users write them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    #[serde(default = "default_timeout_ms")]
    pub hook_timeout_ms: u64,
    #[serde(default = "default_memory_mb")]
    pub hook_memory_mb: u64,
    #[serde(default = "default_output_mb")]
    pub max_output_mb: u64,
}

fn default_timeout_ms() -> u64 {
    crate::hooks::DEFAULT_TIMEOUT.as_millis() as u64
}
fn default_memory_mb() -> u64 {
    (crate::hooks::DEFAULT_MEMORY_BYTES >> 20) as u64
}
fn default_output_mb() -> u64 {
    (crate::hooks::DEFAULT_MAX_OUTPUT_BYTES >> 20) as u64
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            hook_timeout_ms: default_timeout_ms(),
            hook_memory_mb: default_memory_mb(),
            max_output_mb: default_output_mb(),
        }
    }
}

/// Limits outside these ranges are refused at configure time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limits.{field} = {value} is out of range ({range})")]
pub struct InvalidLimit {
    pub field: &'static str,
    pub value: u64,
    pub range: &'static str,
}

impl LimitsConfig {
    /// Checks the ranges and converts to the runtime's limits.
    pub fn to_hook_limits(&self) -> Result<HookLimits, InvalidLimit> {
        let check = |field, value: u64, lo: u64, hi: u64, range| {
            if (lo..=hi).contains(&value) {
                Ok(value)
            } else {
                Err(InvalidLimit {
                    field,
                    value,
                    range,
                })
            }
        };
        let max_mb = (crate::hooks::MAX_MEMORY_BYTES >> 20) as u64;
        Ok(HookLimits {
            timeout: std::time::Duration::from_millis(check(
                "hook_timeout_ms",
                self.hook_timeout_ms,
                1,
                600_000,
                "1-600000",
            )?),
            memory_bytes: (check("hook_memory_mb", self.hook_memory_mb, 1, max_mb, "1-1024")? << 20)
                as usize,
            max_output_bytes: (check("max_output_mb", self.max_output_mb, 1, 1024, "1-1024")? << 20)
                as usize,
        })
    }
}

/// How to download task files, as users write it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_studio_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Lets this backend's task downloads reach private, loopback and
    /// link-local addresses, which the SSRF guard refuses by default (see
    /// [`crate::fetch`]). Label Studio's configured URL and the hosts in
    /// `allowed_hosts` never need it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_private_networks: bool,
}

/// What a backend has been doing: counters shown by `GET /backends/{name}`
/// and the Label Studio URL its last `/setup` reported.
#[derive(Debug, Default)]
pub struct Activity {
    pub requests: AtomicU64,
    pub tasks: AtomicU64,
    pub task_errors: AtomicU64,
    last_error: Mutex<Option<String>>,
    label_studio_url: Mutex<Option<String>>,
}

impl Activity {
    /// Remembers `/setup`'s `hostname`, the fallback for relative file URLs.
    pub fn remember_label_studio_url(&self, url: String) {
        if let Ok(mut slot) = self.label_studio_url.lock() {
            *slot = Some(url);
        }
    }

    pub fn label_studio_url(&self) -> Option<String> {
        self.label_studio_url.lock().ok().and_then(|u| u.clone())
    }

    /// Remembers the most recent task error for the admin API.
    pub fn record_error(&self, message: &str) {
        self.task_errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(message.chars().take(2000).collect());
        }
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|l| l.clone())
    }

    /// A snapshot for JSON output.
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.requests.load(Ordering::Relaxed),
            "tasks": self.tasks.load(Ordering::Relaxed),
            "task_errors": self.task_errors.load(Ordering::Relaxed),
            "last_error": self.last_error(),
        })
    }
}

/// A fully built backend: model loaded, hooks compiled. Immutable.
pub struct Backend {
    pub name: BackendName,
    pub config: BackendConfig,
    pub model_version: String,
    /// Human-readable resolved model source, e.g. `models:/orientation/2`.
    pub model_description: String,
    pub model: Arc<OnnxModel>,
    pub pre_hook: Option<Arc<Hook>>,
    pub post_hook: Arc<Hook>,
    pub limits: HookLimits,
    /// The configured label config, parsed.
    pub label_config: Option<Arc<LabelConfig>>,
    pub created: SystemTime,
    pub fetch: FetchConfig,
    pub activity: Activity,
    /// Keeps the cached model files from eviction while this backend lives.
    pub model_lease: Option<Box<dyn Send + Sync>>,
}

/// The live set of backends. Reads clone an `Arc` under a short lock;
/// a swap replaces one entry.
#[derive(Default)]
pub struct Backends {
    map: RwLock<BTreeMap<BackendName, Arc<Backend>>>,
}

impl Backends {
    /// The current version of a backend.
    pub fn get(&self, name: &BackendName) -> Option<Arc<Backend>> {
        self.map.read().ok()?.get(name).cloned()
    }

    /// Installs a backend, returning the one it replaces.
    pub fn swap(&self, backend: Arc<Backend>) -> Option<Arc<Backend>> {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        map.insert(backend.name.clone(), backend)
    }

    /// Removes a backend.
    pub fn remove(&self, name: &BackendName) -> Option<Arc<Backend>> {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        map.remove(name)
    }

    /// All backends, ordered by name.
    pub fn list(&self) -> Vec<Arc<Backend>> {
        self.map
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// A backend as persisted: its config plus the files it was built from.
#[derive(Debug, Clone)]
pub struct PersistedBackend {
    pub name: BackendName,
    pub config: BackendConfig,
    pub pre_hook: Option<Vec<u8>>,
    pub post_hook: Vec<u8>,
    /// An uploaded model file or archive, if the model came with the request.
    pub model_upload: Option<(String, Vec<u8>)>,
}

/// Why persisted state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state dir {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("backend '{name}' on disk is unreadable: {message}")]
    Corrupt { name: String, message: String },
}

/// The on-disk state: `<dir>/backends/<name>/{config.json, pre.wasm,
/// post.wasm, model.<ext>}`. A backend directory is written complete under
/// a temporary name and renamed into place, so a crash leaves either the old
/// or the new version, never a mix.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

const CONFIG_FILE: &str = "config.json";
const PRE_FILE: &str = "pre.wasm";
const POST_FILE: &str = "post.wasm";
const UPLOAD_NAME_FILE: &str = "model.name";
const UPLOAD_FILE: &str = "model.upload";

impl StateDir {
    /// Opens (and creates) a state directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StateError> {
        let root = root.into();
        for sub in ["backends", "models", "compiled", "downloads"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(|source| StateError::Io { path: dir, source })?;
        }
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where compiled hook artefacts are cached.
    pub fn compiled_dir(&self) -> PathBuf {
        self.root.join("compiled")
    }

    /// Where downloaded models are cached.
    pub fn models_dir(&self) -> PathBuf {
        self.root.join("models")
    }

    /// Where downloaded task files are cached.
    pub fn downloads_dir(&self) -> PathBuf {
        self.root.join("downloads")
    }

    fn backends_dir(&self) -> PathBuf {
        self.root.join("backends")
    }

    /// Writes a backend atomically, replacing any previous version.
    pub fn save(&self, backend: &PersistedBackend) -> Result<(), StateError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StateError::Io { path, source }
        };
        let parent = self.backends_dir();
        let staging = tempfile::Builder::new()
            .prefix(".staging-")
            .tempdir_in(&parent)
            .map_err(io(&parent))?;
        let dir = staging.path();
        let config = PersistedConfig::new(&backend.config)
            .and_then(|c| serde_json::to_vec_pretty(&c))
            .map_err(|e| StateError::Corrupt {
                name: backend.name.to_string(),
                message: e.to_string(),
            })?;
        write_file(&dir.join(CONFIG_FILE), &config)?;
        write_file(&dir.join(POST_FILE), &backend.post_hook)?;
        if let Some(pre) = &backend.pre_hook {
            write_file(&dir.join(PRE_FILE), pre)?;
        }
        if let Some((name, bytes)) = &backend.model_upload {
            write_file(&dir.join(UPLOAD_NAME_FILE), name.as_bytes())?;
            write_file(&dir.join(UPLOAD_FILE), bytes)?;
        }
        let target = parent.join(backend.name.as_str());
        // Rename the old version aside first: rename(2) cannot replace a
        // non-empty directory.
        let retired = parent.join(format!(
            ".retired-{}-{}",
            backend.name,
            uuid::Uuid::new_v4()
        ));
        if target.exists() {
            std::fs::rename(&target, &retired).map_err(io(&target))?;
        }
        let staged = staging.keep();
        std::fs::rename(&staged, &target).map_err(io(&target))?;
        let _ = std::fs::remove_dir_all(&retired);
        Ok(())
    }

    /// Deletes a backend's files.
    pub fn delete(&self, name: &BackendName) -> Result<(), StateError> {
        let dir = self.backends_dir().join(name.as_str());
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Io { path: dir, source }),
        }
    }

    /// Reads every persisted backend. Unreadable entries come back as errors
    /// beside the good ones, so one corrupt backend does not stop the rest.
    pub fn load_all(&self) -> Vec<Result<PersistedBackend, StateError>> {
        let dir = self.backends_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(source) => return vec![Err(StateError::Io { path: dir, source })],
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names.into_iter().map(|n| self.load(&n)).collect()
    }

    fn load(&self, name: &str) -> Result<PersistedBackend, StateError> {
        let corrupt = |message: String| StateError::Corrupt {
            name: name.to_owned(),
            message,
        };
        let backend_name = BackendName::new(name).map_err(|e| corrupt(e.to_string()))?;
        let dir = self.backends_dir().join(name);
        let read = |file: &str| std::fs::read(dir.join(file));
        let config_bytes = read(CONFIG_FILE).map_err(|e| corrupt(format!("{CONFIG_FILE}: {e}")))?;
        let config: PersistedConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| corrupt(format!("{CONFIG_FILE}: {e}")))?;
        let config =
            BackendConfig::try_from(config).map_err(|e| corrupt(format!("{CONFIG_FILE}: {e}")))?;
        let post_hook = read(POST_FILE).map_err(|e| corrupt(format!("{POST_FILE}: {e}")))?;
        let pre_hook = read(PRE_FILE).ok();
        let model_upload = match (read(UPLOAD_NAME_FILE), read(UPLOAD_FILE)) {
            (Ok(n), Ok(bytes)) => Some((String::from_utf8_lossy(&n).into_owned(), bytes)),
            _ => None,
        };
        Ok(PersistedBackend {
            name: backend_name,
            config,
            pre_hook,
            post_hook,
            model_upload,
        })
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    std::fs::write(path, bytes).map_err(|source| StateError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The config as stored on disk. Unlike the API form, secrets are written
/// in clear here (the state dir is the server's own, like a credentials
/// file): a restarted server must be able to reach MLflow and Label Studio.
#[derive(Serialize, Deserialize)]
struct PersistedConfig {
    config: serde_json::Value,
    secrets: BTreeMap<String, String>,
}

impl PersistedConfig {
    fn new(config: &BackendConfig) -> Result<Self, serde_json::Error> {
        let mut secrets = BTreeMap::new();
        let mut keep = |key: &str, secret: &Option<Secret>| {
            if let Some(s) = secret {
                secrets.insert(key.to_owned(), s.expose().to_owned());
            }
        };
        keep("model.password", &config.model.password);
        keep("model.token", &config.model.token);
        keep("fetch.api_key", &config.fetch.api_key);
        Ok(Self {
            config: serde_json::to_value(config)?,
            secrets,
        })
    }
}

impl TryFrom<PersistedConfig> for BackendConfig {
    type Error = serde_json::Error;

    fn try_from(p: PersistedConfig) -> Result<Self, Self::Error> {
        let mut config: BackendConfig = serde_json::from_value(p.config)?;
        let secret = |key: &str| p.secrets.get(key).map(Secret::new);
        config.model.password = secret("model.password");
        config.model.token = secret("model.token");
        config.fetch.api_key = secret("fetch.api_key");
        Ok(config)
    }
}

impl BackendConfig {
    /// A config with every default and no model.
    pub fn empty() -> Self {
        Self {
            model: ModelConfig::default(),
            model_version: None,
            label_config: None,
            batch_size: DEFAULT_BATCH_SIZE,
            limits: LimitsConfig::default(),
            fetch: FetchSettings::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_are_url_and_path_safe() {
        assert!(BackendName::new("orientation-v2_b").is_ok());
        for bad in ["", "../etc", "a/b", "a b", &"x".repeat(65)] {
            assert!(BackendName::new(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(BackendName::root().url_path(), "/");
        assert_eq!(BackendName::new("det").unwrap().url_path(), "/backends/det");
    }

    #[test]
    fn config_rejects_unknown_keys_by_name() {
        let err = serde_json::from_str::<BackendConfig>(r#"{"model":{"uri":"x"},"bach_size":3}"#)
            .unwrap_err();
        assert!(err.to_string().contains("bach_size"), "{err}");
    }

    #[test]
    fn limits_out_of_range_are_named() {
        let limits = LimitsConfig {
            hook_timeout_ms: 0,
            ..LimitsConfig::default()
        };
        let err = limits.to_hook_limits().unwrap_err();
        assert_eq!(err.field, "hook_timeout_ms");
    }

    #[test]
    fn saved_backends_load_back_with_secrets_and_corrupt_ones_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        let mut config = BackendConfig::empty();
        config.model.uri = Some("models:/m/1".into());
        config.model.password = Some(Secret::new("pw"));
        let backend = PersistedBackend {
            name: BackendName::new("a").unwrap(),
            config: config.clone(),
            pre_hook: None,
            post_hook: b"post".to_vec(),
            model_upload: None,
        };
        state.save(&backend).unwrap();
        state.save(&backend).unwrap(); // replacing works too
        std::fs::create_dir_all(tmp.path().join("backends/broken")).unwrap();
        let loaded = state.load_all();
        assert_eq!(loaded.len(), 2);
        let good = loaded[0].as_ref().unwrap();
        assert_eq!(good.config, config);
        assert_eq!(good.config.model.password.as_ref().unwrap().expose(), "pw");
        assert!(matches!(loaded[1], Err(StateError::Corrupt { .. })));
        state.delete(&backend.name).unwrap();
        assert_eq!(state.load_all().len(), 1);
    }
}
