//! From a backend's model configuration to a loaded [`OnnxModel`]: resolve
//! and cache the files, read MLmodel's ONNX flavor, build the session pool,
//! and check the MLflow signature and the [`ModelLimits`] against the real
//! graph.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Weak};

use super::archive::UploadedModel;
use super::cache::ModelCache;
use super::limits::{InputTooLarge, ModelLimits};
use super::mlmodel::{ExecutionMode, GraphOptimizationLevel, MlModel, SignatureSpec};
use super::registry::ProgressFn;
use super::session::{OnnxModel, OrtError, OrtRuntime, SessionOptions, is_cpu_provider};
use super::source::{MlflowConfig, MlflowSettings, ModelSource, ModelSourceError, ModelUri};
use super::tokenizer::{ModelTokenizer, config_label_names};
use super::tokenizer_source::TokenizerSource;
use crate::secret::Secret;
use crate::tensor::{ElementType, TensorSpec};
use serde::{Deserialize, Serialize};

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
    /// Where the tokenizer is when the model folder does not hold it where
    /// exports put it: a path inside the model folder, an MLflow URI, or an
    /// http(s) URL (see [`TokenizerSource`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<String>,
    /// Sessions in the pool; default one per core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<usize>,
    /// Intra-op threads of the session an inference takes when no other
    /// inference of this model runs (a lone request then uses every core);
    /// default one per core on the CPU. 1 turns it off, and the extra
    /// session (a copy of the weights) is not built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lone_threads: Option<usize>,
    /// Set by the server: the alias, `latest` or stage `uri` named when the
    /// backend was configured. `uri` then holds the version it resolved to,
    /// so every replica and every restart loads that same version until
    /// the backend is configured again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_from: Option<String>,
}

impl ModelConfig {
    /// This config with `uri` replaced by `pinned`, the concrete version
    /// the configured URI resolved to (unchanged when `None`).
    pub fn pinned(&self, pinned: Option<&ModelUri>) -> ModelConfig {
        let mut config = self.clone();
        if let Some(pinned) = pinned {
            config.resolved_from = config.uri.replace(pinned.to_string());
        }
        config
    }
}

/// A model ready to serve, with what keeps its files alive.
pub struct LoadedModel {
    pub model: Arc<OnnxModel>,
    /// Where it came from, resolved (e.g. `models:/orientation/2`).
    pub description: String,
    /// A short name for model versions: the registered model's name or the
    /// file's stem (e.g. `orientation`).
    pub label: String,
    /// What the model *is*, independent of how it was named: the cache key
    /// (content-addressed), or the local path. `models:/m/latest` and
    /// `models:/m/2` have the same identity when 2 is the latest.
    pub identity: String,
    /// The concrete version an alias, `latest` or stage resolved to.
    pub pinned: Option<ModelUri>,
    /// The `tokenizer.json` found with the model, loaded, or why there is none.
    pub tokenizer: ModelTokenizer,
    /// The head's label names from a `config.json` beside the graph.
    pub config_labels: Option<Vec<String>>,
    /// Held for as long as a backend uses the model (blocks cache eviction).
    pub lease: Box<dyn Send + Sync>,
}

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelLoadError {
    #[error("model: {0}")]
    Source(#[from] ModelSourceError),
    #[error("model: {0}")]
    Config(String),
    #[error(transparent)]
    Ort(#[from] OrtError),
    #[error("model signature does not match the ONNX graph: {0}")]
    Signature(String),
    #[error(transparent)]
    InputTooLarge(#[from] InputTooLarge),
}

impl ModelLoadError {
    /// Whether the failure lies with an upstream server (a 502, not a 4xx).
    pub fn is_upstream(&self) -> bool {
        matches!(self, Self::Source(e) if e.is_transient())
    }
}

/// Loads models for backends: materializes them in the [`ModelCache`] and
/// builds their session pools.
pub struct ModelLoader {
    ort: Arc<OrtRuntime>,
    cache: ModelCache,
    provider_override: Option<String>,
    progress: Option<ProgressFn>,
    limits: ModelLimits,
    /// Models in use by some backend, by what they are and how their
    /// sessions are built: a hot swap that changes only a hook, or a second
    /// backend on the same model, shares the running session pool instead
    /// of building another (the slow half of a configure, and a copy of the
    /// model's memory).
    loaded: std::sync::Mutex<HashMap<String, Weak<OnnxModel>>>,
}

impl ModelLoader {
    pub fn new(ort: Arc<OrtRuntime>, cache: ModelCache, provider_override: Option<String>) -> Self {
        Self {
            ort,
            cache,
            provider_override,
            progress: None,
            limits: ModelLimits::default(),
            loaded: std::sync::Mutex::default(),
        }
    }

    /// Replaces the [`ModelLimits`] every model loaded from now on is
    /// checked against.
    pub fn with_limits(mut self, limits: ModelLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Reports download progress of every model this loader fetches
    /// (bytes done, bytes expected); the CLI draws it as a bar.
    pub fn with_progress(mut self, progress: ProgressFn) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Resolves, downloads (or unpacks) and loads the configured model, then
    /// checks its MLflow signature against the graph.
    pub async fn load(
        &self,
        config: &ModelConfig,
        upload: Option<&(String, Vec<u8>)>,
    ) -> Result<LoadedModel, ModelLoadError> {
        let source = match (&config.uri, upload) {
            (Some(uri), _) => ModelSource::Uri(ModelUri::parse(uri)?),
            (None, Some((name, bytes))) => ModelSource::Upload(UploadedModel::from_bytes(
                name.clone(),
                bytes.clone().into(),
            )),
            (None, None) => {
                return Err(ModelLoadError::Config(
                    "no model: set model.uri or upload a model".into(),
                ));
            }
        };
        let tokenizer_source = config
            .tokenizer
            .as_deref()
            .map(TokenizerSource::parse)
            .transpose()
            .map_err(|e| ModelLoadError::Config(e.to_string()))?;
        let mlflow = MlflowConfig::from_settings(&MlflowSettings {
            tracking_uri: config.tracking_uri.clone(),
            username: config.username.clone(),
            password: config.password.clone(),
            token: config.token.clone(),
        })?;
        let cached = match &self.progress {
            Some(progress) => {
                self.cache
                    .materialize_with_progress(&source, mlflow.as_ref(), progress.clone())
                    .await?
            }
            None => self.cache.materialize(&source, mlflow.as_ref()).await?,
        };
        let options = self.session_options(config, cached.mlmodel.as_ref());
        let identity = cached
            .lease
            .key()
            .map_or_else(|| cached.onnx_path.display().to_string(), str::to_owned);
        let model = self
            .shared_or_load(&identity, &cached.onnx_path, options)
            .await?;
        if let Some(signature) = cached.mlmodel.as_ref().and_then(|m| m.signature.as_ref()) {
            check_signature("input", &signature.inputs, model.inputs())?;
            check_signature("output", &signature.outputs, model.outputs())?;
        }
        let configured = match &tokenizer_source {
            Some(source @ TokenizerSource::InModel(path)) => {
                Some((cached.dir.join(path), source.to_string()))
            }
            Some(TokenizerSource::Remote(remote)) => Some((
                self.cache.tokenizer_file(remote, mlflow.as_ref()).await?,
                remote.to_string(),
            )),
            None => None,
        };
        let (tokenizer, config_labels) = {
            let (dir, onnx) = (cached.dir.clone(), cached.onnx_path.clone());
            tokio::task::spawn_blocking(move || {
                let tokenizer = match configured {
                    Some((path, shown)) => ModelTokenizer::load_configured(&path, &shown),
                    None => Ok(ModelTokenizer::find(&dir, &onnx)),
                };
                (tokenizer, config_label_names(&dir, &onnx))
            })
            .await
            .map_err(|e| ModelLoadError::Config(e.to_string()))?
        };
        let tokenizer = tokenizer.map_err(|e| ModelLoadError::Config(format!("tokenizer: {e}")))?;
        // A tokenizer from elsewhere changes what the model predicts as
        // much as its weights do: it is part of what the model is.
        let identity = match (&tokenizer_source, tokenizer.get()) {
            (Some(_), Ok(loaded)) => format!("{identity}+tokenizer:{}", loaded.sha256()),
            _ => identity,
        };
        Ok(LoadedModel {
            model,
            label: label_of(&source),
            identity,
            pinned: cached.pinned,
            tokenizer,
            config_labels,
            description: cached.description,
            lease: Box::new(cached.lease),
        })
    }

    /// MLmodel's `onnx_session_options` and `providers`, then the backend's
    /// and the server's overrides.
    fn session_options(&self, config: &ModelConfig, mlmodel: Option<&MlModel>) -> SessionOptions {
        let mut options = SessionOptions::default();
        if let Some(flavor) = mlmodel.map(|m| &m.onnx) {
            let s = &flavor.session_options;
            if let Some(n) = s.intra_op_num_threads.filter(|n| *n > 0) {
                options.intra_threads = n;
            }
            if let Some(n) = s.inter_op_num_threads.filter(|n| *n > 0) {
                options.inter_threads = n;
            }
            options.parallel_execution = s.execution_mode == Some(ExecutionMode::Parallel);
            if let Some(level) = s.graph_optimization_level {
                options.optimization_level = match level {
                    GraphOptimizationLevel::Disabled => 0,
                    GraphOptimizationLevel::Basic => 1,
                    GraphOptimizationLevel::Extended | GraphOptimizationLevel::Layout => 2,
                    GraphOptimizationLevel::All => 99,
                };
            }
            options.providers = flavor.providers.iter().map(|p| p.name.clone()).collect();
        }
        if let Some(n) = config.sessions {
            options.pool_size = n.max(1);
        }
        if let Some(provider) = &self.provider_override {
            options.providers = vec![provider.clone()];
        }
        // More threads than cores only take turns; a GPU does not need them.
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let on_cpu = options.providers.iter().all(|p| is_cpu_provider(p));
        options.lone_threads = match config.lone_threads {
            Some(n) => n.clamp(1, cores),
            None if on_cpu => cores,
            None => 1,
        };
        options
    }

    /// The running session pool for this model and these options, or a
    /// new one. Local files are keyed by their size and modification time
    /// too, so a file replaced in place is loaded afresh.
    async fn shared_or_load(
        &self,
        identity: &str,
        path: &Path,
        options: SessionOptions,
    ) -> Result<Arc<OnnxModel>, ModelLoadError> {
        let stamp = std::fs::metadata(path)
            .map(|m| format!("{}:{:?}", m.len(), m.modified().ok()))
            .unwrap_or_default();
        let key = format!("{identity}|{stamp}|{options:?}");
        let shared = self.loaded_models().get(&key).and_then(Weak::upgrade);
        if let Some(model) = shared {
            tracing::debug!(model = %identity, "reusing the loaded session pool");
            return Ok(model);
        }
        let model = self.load_onnx(path, options).await?;
        let mut loaded = self.loaded_models();
        loaded.retain(|_, m| m.strong_count() > 0);
        loaded.insert(key, Arc::downgrade(&model));
        Ok(model)
    }

    fn loaded_models(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<OnnxModel>>> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads the model with one session, then builds the rest of its pool
    /// in the background: a configure or a restart waits for one graph
    /// optimisation, not `pool_size` of them on a machine with few cores.
    async fn load_onnx(
        &self,
        path: &Path,
        options: SessionOptions,
    ) -> Result<Arc<OnnxModel>, ModelLoadError> {
        let ort = self.ort.clone();
        let path = path.to_owned();
        let first = {
            let (ort, path, options) = (ort.clone(), path.clone(), options.clone());
            tokio::task::spawn_blocking(move || OnnxModel::load_first(&ort, &path, &options))
        };
        let model = Arc::new(
            first
                .await
                .map_err(|e| ModelLoadError::Config(e.to_string()))??,
        );
        // Before the rest of the pool and any inference: a pre-hook fills
        // the declared shape, so an absurd one costs memory at the first
        // task.
        self.limits.check_inputs(model.inputs())?;
        let more = options.pool_size.max(1) - 1;
        if more > 0 || options.lone_threads > 1 {
            let growing = model.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = growing.add_sessions(&ort, &path, &options, more) {
                    tracing::warn!(
                        model = %path.display(),
                        "serving with one session; building the others failed: {e}"
                    );
                }
                if let Err(e) = growing.add_lone_session(&ort, &path, &options) {
                    tracing::warn!(
                        model = %path.display(),
                        "serving without the lone session; building it failed: {e}"
                    );
                }
            });
        }
        Ok(model)
    }
}

/// A short, readable name for a model source.
fn label_of(source: &ModelSource) -> String {
    let stem = |p: &Path| {
        p.file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("model")
            .to_owned()
    };
    let raw = match source {
        ModelSource::Upload(upload) => stem(Path::new(upload.file_name())),
        ModelSource::Uri(uri) => match uri {
            ModelUri::ModelVersion { name, .. }
            | ModelUri::ModelAlias { name, .. }
            | ModelUri::LatestVersion { name }
            | ModelUri::Stage { name, .. } => name.clone(),
            ModelUri::LocalDir(dir) => dir
                .file_name()
                .and_then(|s| s.to_str())
                .unwrap_or("model")
                .to_owned(),
            ModelUri::OnnxFile(file) => stem(file),
            _ => "model".to_owned(),
        },
    };
    let label: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    if label.is_empty() {
        "model".into()
    } else {
        label
    }
}

/// Checks an MLflow signature against the graph: names (when given),
/// element types and ranks.
pub fn check_signature(
    side: &str,
    declared: &[SignatureSpec],
    actual: &[TensorSpec],
) -> Result<(), ModelLoadError> {
    for (i, d) in declared.iter().enumerate() {
        let found = match &d.name {
            Some(name) => actual.iter().find(|a| &a.name == name).ok_or_else(|| {
                ModelLoadError::Signature(format!(
                    "MLmodel declares {side} '{name}', but the graph's {side}s are {}",
                    actual
                        .iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?,
            None => actual.get(i).ok_or_else(|| {
                ModelLoadError::Signature(format!(
                    "MLmodel declares {} {side}s, the graph has {}",
                    declared.len(),
                    actual.len()
                ))
            })?,
        };
        let declared_type = ElementType::from_numpy_name(&d.dtype);
        if declared_type.is_some() && declared_type != found.element_type {
            return Err(ModelLoadError::Signature(format!(
                "{side} '{}': MLmodel says {}, the graph has {}",
                found.name,
                d.dtype,
                found
                    .element_type
                    .map_or("an unsupported type".into(), |t| t.numpy_name().to_owned())
            )));
        }
        if !d.shape.is_empty() && d.shape.len() != found.shape.len() {
            return Err(ModelLoadError::Signature(format!(
                "{side} '{}': MLmodel says rank {} {:?}, the graph has rank {} {:?}",
                found.name,
                d.shape.len(),
                d.shape,
                found.shape.len(),
                found.shape
            )));
        }
    }
    Ok(())
}
