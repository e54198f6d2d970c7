//! A backend as the server knows it: its name and configuration as users
//! write them ([`BackendName`], [`BackendConfig`]), the built, immutable
//! [`Backend`], the live swappable set of them ([`Backends`]), and
//! [`Loader`], which builds one from its configuration.
//!
//! A [`Backend`] is immutable once built. Reconfiguring builds a complete new
//! one and swaps the `Arc` in one step, so a request that already holds the
//! old one finishes on it. Storing backends is `state`'s concern; serving
//! them is the HTTP modules'.

mod build;
mod params;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub use build::{ConfigureError, Loader};
pub use params::{HookParams, InvalidParams, MAX_PARAMS_BYTES};

use crate::fetch::{FetchConfig, FetchSettings};
use crate::hooks::{Hook, HookLimits};
use crate::labelconfig::LabelConfig;
use crate::model::{ModelConfig, OnnxModel};

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

/// How many writes a backend has seen: 1 for its first version.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Generation(u64);

impl Generation {
    /// The generation of a backend's first version.
    pub const FIRST: Self = Self(1);

    pub fn new(n: u64) -> Self {
        Self(n)
    }

    pub fn get(self) -> u64 {
        self.0
    }

    /// The generation after this one.
    pub fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// `If-Match` is not a generation.
#[derive(Debug, thiserror::Error)]
#[error(
    "If-Match {0:?} is not a backend generation (expected a number such as \"3\", as ETag gives it)"
)]
pub struct InvalidGeneration(String);

impl FromStr for Generation {
    type Err = InvalidGeneration;

    /// Accepts `3` and the entity-tag form `"3"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        let bare = trimmed
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(trimmed);
        bare.parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(Self)
            .ok_or_else(|| InvalidGeneration(s.to_owned()))
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
    /// Values both hooks read at run time (`params()` in the SDKs); part of
    /// the derived model version.
    #[serde(default, skip_serializing_if = "HookParams::is_empty")]
    pub params: HookParams,
}

fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
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
    /// The configuration it was built from, with a moving model URI (alias,
    /// `latest`, stage) pinned to the version it resolved to.
    pub config: BackendConfig,
    pub model_version: String,
    /// Human-readable resolved model source, e.g. `models:/orientation/2`.
    pub model_description: String,
    pub model: Arc<OnnxModel>,
    /// The model's tokenizer, given to hooks that ask for it.
    pub tokenizer: crate::model::ModelTokenizer,
    /// How the built-in pre-hook cuts texts into windows, read from the
    /// params once at build (the defaults when a pre-hook runs instead).
    pub text_windows: crate::pipeline::builtin_pre::TextWindows,
    /// What hooks see as the model's metadata: the graph's, plus the
    /// label names of a transformer head's `config.json`.
    pub model_metadata: Vec<(String, String)>,
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
    /// The store's generation of this version; 0 until it is stamped, once,
    /// when the store has assigned it (a configure validates a backend
    /// before storing it).
    pub generation: AtomicU64,
}

impl Backend {
    /// The store's generation of this version.
    pub fn generation(&self) -> Generation {
        Generation::new(self.generation.load(Ordering::Relaxed))
    }

    /// Records the generation the store assigned, before the backend is
    /// published.
    pub fn stamp(&self, generation: Generation) {
        self.generation.store(generation.get(), Ordering::Relaxed);
    }
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
#[derive(Debug, Clone, PartialEq)]
pub struct PersistedBackend {
    pub name: BackendName,
    pub config: BackendConfig,
    pub pre_hook: Option<Vec<u8>>,
    pub post_hook: Vec<u8>,
    /// An uploaded model file or archive, if the model came with the request.
    pub model_upload: Option<(String, Vec<u8>)>,
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
            params: HookParams::default(),
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
}
