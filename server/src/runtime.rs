//! The engine without HTTP: ONNX Runtime, the hook sandbox, task
//! downloads, the model loader, the memory budget and the backend
//! [`Loader`], wired in one place ([`Runtime::start`]). `serve` builds its
//! application state on it; `try`, the tests and the benches start the same
//! engine, so what they measure is what the server runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::backend::Loader;
use crate::budget::MemoryBudget;
use crate::fetch::{Fetcher, FetcherOptions, ProxySettings};
use crate::hooks::{HookLoadError, HookRuntime, RuntimeOptions};
use crate::model::{ModelCache, ModelLimits, ModelLoader, OrtError, OrtRuntime, ProgressFn};
use crate::pipeline::Services;

/// Folders the engine keeps under its cache dir: compiled hooks, models
/// fetched from registries, task files.
pub const CACHE_SUBDIRS: [&str; 3] = [COMPILED_DIR, MODELS_DIR, DOWNLOADS_DIR];
const COMPILED_DIR: &str = "compiled";
const MODELS_DIR: &str = "models";
const DOWNLOADS_DIR: &str = "downloads";

/// How to start the engine. [`RuntimeSettings::new`] gives every default.
#[derive(Clone)]
pub struct RuntimeSettings {
    /// Where the caches live ([`CACHE_SUBDIRS`]).
    pub cache_dir: PathBuf,
    /// Size bound of the model cache.
    pub model_cache_bytes: u64,
    /// Size bound of the task-file cache.
    pub download_cache_bytes: u64,
    /// Overrides every model's execution providers.
    pub execution_provider: Option<String>,
    /// `libonnxruntime` to load instead of discovering one.
    pub ort_library: Option<PathBuf>,
    /// Cap on ONNX Runtime's memory (all sessions share one capped arena);
    /// `None`: [`crate::model::default_memory_cap`]; `Some(0)`: no cap.
    pub ort_memory_cap: Option<u64>,
    /// Limits on what a model may declare (its inputs' size per task).
    pub model_limits: ModelLimits,
    /// Bytes request work may hold at once; `None`:
    /// [`MemoryBudget::default_total`].
    pub memory_budget_bytes: Option<u64>,
    /// How long work waits for room in the budget before it is refused.
    pub memory_wait: Duration,
    /// Lets every backend's task downloads reach private and loopback
    /// addresses (`--allow-private-networks`).
    pub allow_private_networks: bool,
    /// Task downloads in progress at once from one origin.
    pub max_downloads_per_origin: usize,
    /// The hook sandbox's pool and limits; its artefact dir defaults to
    /// the cache dir's.
    pub hooks: RuntimeOptions,
    /// Told how a model download progresses (the CLI draws a bar).
    pub download_progress: Option<ProgressFn>,
}

impl RuntimeSettings {
    /// Every default, caches under `cache_dir`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
            model_cache_bytes: crate::model::DEFAULT_CACHE_MAX_BYTES,
            download_cache_bytes: crate::fetch::DEFAULT_CACHE_MAX_BYTES,
            execution_provider: None,
            ort_library: None,
            ort_memory_cap: None,
            model_limits: ModelLimits::default(),
            memory_budget_bytes: None,
            memory_wait: crate::budget::DEFAULT_WAIT,
            allow_private_networks: false,
            max_downloads_per_origin: crate::fetch::DEFAULT_MAX_PER_ORIGIN,
            hooks: RuntimeOptions::default(),
            download_progress: None,
        }
    }

    fn cache(&self, subdir: &str) -> PathBuf {
        self.cache_dir.join(subdir)
    }
}

/// Why the engine cannot start. Each message is one line saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Ort(#[from] OrtError),
    #[error("cannot start the hook runtime: {0}")]
    Hooks(#[from] HookLoadError),
    #[error("cannot set up downloads: {0}")]
    Fetch(String),
    #[error("cannot open the model cache: {0}")]
    Models(String),
}

/// The started engine. Its parts are shared (`Arc`) with what it builds.
#[derive(Clone)]
pub struct Runtime {
    pub ort: Arc<OrtRuntime>,
    pub hooks: Arc<HookRuntime>,
    /// Builds backends (compiles hooks, loads models).
    pub loader: Arc<Loader>,
    /// What every prediction uses: hooks, downloads, the memory budget.
    pub services: Arc<Services>,
    pub budget: Arc<MemoryBudget>,
}

impl Runtime {
    /// Loads ONNX Runtime (once per process: later starts share it), opens
    /// the caches and builds the hook sandbox, the downloader and the
    /// memory budget.
    pub fn start(settings: &RuntimeSettings) -> Result<Self, StartError> {
        let ort = OrtRuntime::shared(
            settings.ort_library.as_deref(),
            settings
                .ort_memory_cap
                .or_else(crate::model::default_memory_cap),
        )?;
        let hooks = Arc::new(HookRuntime::new(RuntimeOptions {
            artefact_dir: settings
                .hooks
                .artefact_dir
                .clone()
                .or_else(|| Some(settings.cache(COMPILED_DIR))),
            ..settings.hooks.clone()
        })?);
        let fetcher = Fetcher::with_options(FetcherOptions {
            cache_dir: Some(settings.cache(DOWNLOADS_DIR)),
            cache_max_bytes: settings.download_cache_bytes,
            allow_private_networks: settings.allow_private_networks,
            max_per_origin: settings.max_downloads_per_origin,
            proxy: ProxySettings::from_env(),
            ..FetcherOptions::default()
        })
        .map_err(|e| StartError::Fetch(e.to_string()))?;
        let cache = ModelCache::new(settings.cache(MODELS_DIR), settings.model_cache_bytes)
            .map_err(|e| StartError::Models(e.to_string()))?;
        let provider = settings
            .execution_provider
            .clone()
            .filter(|p| !p.trim().is_empty());
        if let Some(provider) = &provider {
            crate::model::warn_if_cuda_without_gpu(provider);
        }
        let mut models =
            ModelLoader::new(ort.clone(), cache, provider).with_limits(settings.model_limits);
        if let Some(progress) = settings.download_progress.clone() {
            models = models.with_progress(progress);
        }
        let budget = Arc::new(MemoryBudget::new(
            settings
                .memory_budget_bytes
                .unwrap_or_else(MemoryBudget::default_total),
            settings.memory_wait,
        ));
        Ok(Self {
            loader: Arc::new(Loader::new(hooks.clone(), Arc::new(models))),
            services: Arc::new(Services::new(
                hooks.clone(),
                Arc::new(fetcher),
                budget.clone(),
            )),
            ort,
            hooks,
            budget,
        })
    }

    /// The library ONNX Runtime was loaded from.
    pub fn ort_library(&self) -> &Path {
        self.ort.library()
    }
}
