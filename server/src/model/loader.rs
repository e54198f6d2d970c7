//! From a backend's model configuration to a loaded [`OnnxModel`]: resolve
//! and cache the files, read MLmodel's ONNX flavor, build the session pool,
//! and check the MLflow signature against the real graph.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::session::{OnnxModel, OrtError, OrtRuntime, SessionOptions};
use crate::state::ModelConfig;
use crate::tensor::{ElementType, TensorSpec};

/// A model ready to serve, with what keeps its files alive.
pub struct LoadedModel {
    pub model: Arc<OnnxModel>,
    /// Where it came from, resolved (e.g. `models:/orientation/2`).
    pub description: String,
    /// Held for as long as a backend uses the model (blocks cache eviction).
    pub lease: Box<dyn Send + Sync>,
}

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelLoadError {
    #[error("model: {0}")]
    Source(String),
    /// The registry or artifact store could not be reached or failed (5xx).
    #[error("model: {0}")]
    Upstream(String),
    #[error(transparent)]
    Ort(#[from] OrtError),
    #[error("model signature does not match the ONNX graph: {0}")]
    Signature(String),
}

impl ModelLoadError {
    /// Whether the failure lies with an upstream server (a 502, not a 4xx).
    pub fn is_upstream(&self) -> bool {
        matches!(self, Self::Upstream(_))
    }
}

/// Loads models for backends.
pub struct ModelLoader {
    ort: Arc<OrtRuntime>,
    cache_dir: PathBuf,
    cache_bytes: u64,
    provider_override: Option<String>,
}

impl ModelLoader {
    pub fn new(
        ort: Arc<OrtRuntime>,
        cache_dir: PathBuf,
        cache_bytes: u64,
        provider_override: Option<String>,
    ) -> Self {
        Self {
            ort,
            cache_dir,
            cache_bytes,
            provider_override,
        }
    }

    /// Resolves, downloads (or unpacks) and loads the configured model.
    pub async fn load(
        &self,
        config: &ModelConfig,
        upload: Option<&(String, Vec<u8>)>,
    ) -> Result<LoadedModel, ModelLoadError> {
        let _ = (&self.cache_dir, self.cache_bytes, upload);
        let uri = config
            .uri
            .clone()
            .ok_or_else(|| ModelLoadError::Source("no model uri".into()))?;
        let path = PathBuf::from(&uri);
        let onnx = if path.is_dir() {
            path.join("model.onnx")
        } else {
            path.clone()
        };
        let mut options = SessionOptions::default();
        if let Some(n) = config.sessions {
            options.pool_size = n.max(1);
        }
        if let Some(provider) = &self.provider_override {
            options.providers = vec![provider.clone()];
        }
        let model = self.load_onnx(&onnx, options).await?;
        Ok(LoadedModel {
            model: Arc::new(model),
            description: uri,
            lease: Box::new(()),
        })
    }

    async fn load_onnx(&self, path: &Path, options: SessionOptions) -> Result<OnnxModel, ModelLoadError> {
        let ort = self.ort.clone();
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || OnnxModel::load(&ort, &path, &options))
            .await
            .map_err(|e| ModelLoadError::Source(e.to_string()))?
            .map_err(ModelLoadError::from)
    }
}

/// A signature entry as MLflow declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredTensor {
    pub name: Option<String>,
    pub dtype: String,
    pub shape: Vec<i64>,
}

/// Checks an MLflow signature against the graph: names (when given),
/// element types and ranks.
pub fn check_signature(
    side: &str,
    declared: &[DeclaredTensor],
    actual: &[TensorSpec],
) -> Result<(), ModelLoadError> {
    for (i, d) in declared.iter().enumerate() {
        let found = match &d.name {
            Some(name) => actual.iter().find(|a| &a.name == name).ok_or_else(|| {
                ModelLoadError::Signature(format!(
                    "MLmodel declares {side} '{name}', but the graph's {side}s are {}",
                    actual.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ")
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
