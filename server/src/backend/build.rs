//! Building a [`Backend`] from its configuration: hooks compiled and the
//! model loaded concurrently, every part of the configuration checked, and
//! the derived `model_version`. `/configure` and start-up restore both build
//! through [`Loader`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{Activity, Backend, BackendName, PersistedBackend};
use crate::hooks::{HookKind, HookLoadError, HookRuntime};
use crate::labelconfig::LabelConfig;
use crate::model::{LoadedModel, ModelLoadError, ModelLoader};

/// Why a backend could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigureError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Hook(#[from] HookLoadError),
    #[error(transparent)]
    Model(#[from] ModelLoadError),
}

/// Builds backends from configurations: compiles hooks and loads models.
pub struct Loader {
    hooks: Arc<HookRuntime>,
    models: Arc<ModelLoader>,
    locks: Mutex<HashMap<BackendName, Arc<tokio::sync::Mutex<()>>>>,
}

impl Loader {
    pub fn new(hooks: Arc<HookRuntime>, models: Arc<ModelLoader>) -> Self {
        Self {
            hooks,
            models,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// The lock that serialises changes to one backend (configure,
    /// delete), so disk and memory agree.
    pub fn lock_for(&self, name: &BackendName) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(name.clone()).or_default().clone()
    }

    /// Compiles the hooks and loads the model (concurrently), checking every
    /// part of the configuration.
    pub async fn build(&self, p: &PersistedBackend) -> Result<Backend, ConfigureError> {
        let config = &p.config;
        let limits = config
            .limits
            .to_hook_limits()
            .map_err(|e| ConfigureError::Config(e.to_string()))?;
        if config.batch_size == 0 {
            return Err(ConfigureError::Config(
                "batch_size must be at least 1".into(),
            ));
        }
        let label_config = config
            .label_config
            .as_deref()
            .map(|xml| {
                LabelConfig::parse(xml)
                    .map(Arc::new)
                    .map_err(|e| ConfigureError::Config(format!("label_config: {e}")))
            })
            .transpose()?;
        let fetch = crate::fetch::FetchConfig::from_settings(&config.fetch)
            .map_err(|e| ConfigureError::Config(format!("fetch: {e}")))?;
        let pre = async {
            match &p.pre_hook {
                Some(bytes) => self
                    .hooks
                    .load(HookKind::Pre, Bytes::from(bytes.clone()))
                    .await
                    .map(|h| Some(Arc::new(h))),
                None => Ok(None),
            }
        };
        let post = self
            .hooks
            .load(HookKind::Post, Bytes::from(p.post_hook.clone()));
        let model = self.models.load(&config.model, p.model_upload.as_ref());
        let (pre, post, model) = tokio::join!(pre, post, model);
        let (pre, post, loaded) = (pre?, post?, model?);
        let LoadedModel {
            model,
            description,
            label,
            identity,
            pinned,
            tokenizer,
            config_labels,
            lease,
        } = loaded;
        let text_windows = match pre {
            None => {
                crate::pipeline::builtin_pre::TextWindows::for_model(model.inputs(), &config.params)
                    .map_err(ConfigureError::Config)?
            }
            Some(_) => crate::pipeline::builtin_pre::TextWindows::default(),
        };
        let mut config = config.clone();
        config.model = config.model.pinned(pinned.as_ref());
        let model_version = config.model_version.clone().unwrap_or_else(|| {
            derived_version(&label, &identity, pre.as_deref(), &post, &config.params)
        });
        let model_metadata = model_metadata(&model, config_labels);
        let backend = Backend {
            name: p.name.clone(),
            config,
            model_version,
            model_description: description,
            model,
            tokenizer,
            text_windows,
            model_metadata,
            pre_hook: pre,
            post_hook: Arc::new(post),
            limits,
            label_config,
            fetch,
            created: SystemTime::now(),
            activity: Activity::default(),
            model_lease: Some(lease),
            generation: std::sync::atomic::AtomicU64::new(0),
        };
        if let Some(note) = crate::pipeline::builtin_pre::open_size_note_for(&backend) {
            tracing::warn!(backend = %backend.name, "{note}");
        }
        Ok(backend)
    }
}

/// The model's ONNX metadata, plus the head's label names from its
/// `config.json` as `id2label` (a JSON list) when the graph names none
/// under that key: hooks find class names in one place.
fn model_metadata(
    model: &crate::model::OnnxModel,
    config_labels: Option<Vec<String>>,
) -> Vec<(String, String)> {
    let mut metadata = model.metadata().to_vec();
    let named = metadata.iter().any(|(k, _)| k == ID2LABEL_KEY);
    if let Some(labels) = config_labels.filter(|_| !named) {
        metadata.push((
            ID2LABEL_KEY.to_owned(),
            serde_json::Value::from(labels).to_string(),
        ));
    }
    metadata
}

/// The metadata key a transformer head's label names are given under.
const ID2LABEL_KEY: &str = "id2label";

/// `<model>-<8 hex>`: changes whenever the model, a hook or the hook params
/// change, so Label Studio re-predicts tasks after a reconfiguration and
/// dedups otherwise. A hook counts by its source stamp when it has one, so
/// rebuilding unchanged sources with a toolchain that is not reproducible
/// changes nothing. Empty params add nothing: backends configured before
/// params existed keep their version.
fn derived_version(
    label: &str,
    identity: &str,
    pre: Option<&crate::hooks::Hook>,
    post: &crate::hooks::Hook,
    params: &super::HookParams,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(identity.as_bytes());
    if let Some(pre) = pre {
        hasher.update(pre.info().version_id().as_bytes());
    }
    hasher.update(post.info().version_id().as_bytes());
    if !params.is_empty() {
        hasher.update(b"\0params\0");
        hasher.update(params.json().as_bytes());
    }
    format!("{label}-{}", &hex::encode(hasher.finalize())[..8])
}
