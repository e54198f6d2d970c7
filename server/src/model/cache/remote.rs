//! MLflow models in the cache: resolve and list through the registry, key
//! the entry by the proxy location and file list, download into a staging
//! folder (`MLmodel` first), and remember which entry a URI resolved to so
//! the model still loads while the tracking server is unreachable.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::local::parse_mlmodel;
use super::manifest::ManifestFile;
use super::{CachedModel, Filled, ModelCache, REFS_DIR, blocking, is_key};
use crate::model::mlmodel::MLMODEL_FILE;
use crate::model::registry::{ProgressFn, RegistryClient, RemoteFile, ResolvedModel};
use crate::model::source::{MlflowConfig, ModelSourceError, ModelUri, display_url};

impl ModelCache {
    pub(super) async fn remote(
        &self,
        uri: &ModelUri,
        mlflow: &MlflowConfig,
        progress: Option<ProgressFn>,
    ) -> Result<CachedModel, ModelSourceError> {
        let client =
            RegistryClient::new(mlflow.clone(), self.shared.http.clone()).with_retry(self.retry);
        let found = async {
            let resolved = client.resolve(uri).await?;
            let files = client.list_files(&resolved.location).await?;
            Ok::<_, ModelSourceError>((resolved, files))
        }
        .await;
        let (resolved, files) = match found {
            Ok(found) => found,
            Err(error) if error.is_transient() => {
                return match self.offline_copy(uri, mlflow).await {
                    Some(model) => {
                        tracing::warn!(
                            model = %uri,
                            "{error}; using the cached copy from the last successful resolution"
                        );
                        Ok(model)
                    }
                    None => Err(error),
                };
            }
            Err(error) => return Err(error),
        };
        if files.is_empty() {
            return Err(ModelSourceError::NotFound {
                detail: format!(
                    "{}: no files at {} on the MLflow tracking server at {}",
                    resolved.description,
                    resolved.artifact_uri,
                    mlflow.display_uri()
                ),
            });
        }
        let key = remote_key(&resolved, &files);
        let description = resolved.description.clone();
        let pinned = resolved
            .version
            .as_deref()
            .and_then(|version| uri.pinned_to(version));
        let mut model = self
            .get_or_fill(
                &key,
                &description,
                &uri.to_string(),
                move |staging: PathBuf| async move {
                    download(&client, &resolved, &files, &staging, progress.as_ref()).await
                },
            )
            .await?;
        self.remember(mlflow, uri, &key).await;
        model.pinned = pinned;
        Ok(model)
    }

    pub(super) fn ref_path(&self, mlflow: &MlflowConfig, uri: &ModelUri) -> PathBuf {
        let mut hasher = Sha256::new();
        hasher.update(b"cls-model-cache/ref/v1\n");
        hasher.update(mlflow.display_uri().as_bytes());
        hasher.update(b"\n");
        hasher.update(uri.to_string().as_bytes());
        self.shared
            .dir
            .join(REFS_DIR)
            .join(hex::encode(hasher.finalize()))
    }

    /// Records that `uri` on `mlflow` resolved to `key` (best effort).
    pub(super) async fn remember(&self, mlflow: &MlflowConfig, uri: &ModelUri, key: &str) {
        let path = self.ref_path(mlflow, uri);
        let tmp = path.with_extension("tmp");
        let written = async {
            tokio::fs::write(&tmp, key).await?;
            tokio::fs::rename(&tmp, &path).await
        }
        .await;
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), "cannot record the cache entry of {uri}: {e}");
        }
    }

    /// The entry `uri` last resolved to, if it is still cached and intact.
    pub(super) async fn offline_copy(
        &self,
        uri: &ModelUri,
        mlflow: &MlflowConfig,
    ) -> Option<CachedModel> {
        let key = tokio::fs::read_to_string(self.ref_path(mlflow, uri))
            .await
            .ok()?;
        let key = key.trim();
        if !is_key(key) {
            return None;
        }
        let description = format!(
            "{uri} (cached copy; MLflow at {} unreachable)",
            mlflow.display_uri()
        );
        let _guard = self.key_lock(key).lock_owned().await;
        let lease = self.lease(key);
        self.reuse(key, &description, &lease).await.ok().flatten()
    }
}

async fn download(
    client: &RegistryClient,
    resolved: &ResolvedModel,
    files: &[RemoteFile],
    staging: &Path,
    progress: Option<&ProgressFn>,
) -> Result<Filled, ModelSourceError> {
    let total: u64 = files.iter().filter_map(|f| f.size).sum();
    tracing::info!(
        model = %resolved.description,
        files = files.len(),
        bytes = total,
        "downloading {} ({} files, {total} bytes) from {}",
        resolved.description,
        files.len(),
        client.config().display_uri()
    );
    // MLmodel first: a model without an ONNX flavor fails before its
    // (possibly large) other files are fetched.
    let (first, rest): (Vec<RemoteFile>, Vec<RemoteFile>) =
        files.iter().cloned().partition(|f| f.path == MLMODEL_FILE);
    let offset_progress = |offset: u64| -> Option<ProgressFn> {
        progress.map(|p| {
            let p = p.clone();
            Arc::new(move |done: u64, _: u64| p(offset + done, total)) as ProgressFn
        })
    };
    let mut downloaded = client
        .download(
            &resolved.location,
            &first,
            staging,
            offset_progress(0).as_ref(),
        )
        .await?;
    let label = resolved.description.clone();
    let root = staging.to_path_buf();
    blocking(staging, move || parse_mlmodel(&root, &label).map(drop)).await?;
    let offset = downloaded.iter().map(|f| f.size).sum();
    downloaded.extend(
        client
            .download(
                &resolved.location,
                &rest,
                staging,
                offset_progress(offset).as_ref(),
            )
            .await?,
    );
    Ok(Filled {
        model_root: String::new(),
        files: downloaded
            .into_iter()
            .map(|f| ManifestFile {
                path: f.path,
                size: f.size,
                sha256: f.sha256,
            })
            .collect(),
    })
}

/// The cache key of a remote model: its proxy location and file list.
fn remote_key(resolved: &ResolvedModel, files: &[RemoteFile]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"cls-model-cache/remote/v1\n");
    hasher.update(display_url(&resolved.location.server).as_bytes());
    hasher.update(b"\n");
    hasher.update(resolved.location.path.as_bytes());
    hasher.update(b"\n");
    for file in files {
        hasher.update(file.path.as_bytes());
        hasher.update(b"\t");
        hasher.update(
            file.size
                .map_or_else(|| "?".to_owned(), |s| s.to_string())
                .as_bytes(),
        );
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}
