//! Tokenizers kept outside the model folder (`model.tokenizer` naming an
//! MLflow URI or an http(s) URL), downloaded into the cache's
//! `.tokenizers/` folder, one file per source. The copy is refreshed on
//! every build and used as it is when the source is unreachable, so a
//! replica restarting while the tokenizer's host is down still serves.

use std::path::{Path, PathBuf};

use futures::StreamExt as _;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::{ModelCache, TMP_DIR};
use crate::model::registry::{RegistryClient, RemoteFile};
use crate::model::source::{MlflowConfig, ModelSourceError, display_url};
use crate::model::tokenizer::{
    MAX_TOKENIZER_FILE_BYTES, TOKENIZER_FILE, TOKENIZER_PLACES, short_list,
};
use crate::model::tokenizer_source::RemoteTokenizer;

/// Where downloaded tokenizers live, under the cache folder.
const TOKENIZERS_DIR: &str = ".tokenizers";

impl ModelCache {
    /// The local copy of a tokenizer kept outside the model folder:
    /// downloaded afresh, or the last copy when the source is unreachable.
    pub async fn tokenizer_file(
        &self,
        source: &RemoteTokenizer,
        mlflow: Option<&MlflowConfig>,
    ) -> Result<PathBuf, ModelSourceError> {
        let dir = self.shared.dir.join(TOKENIZERS_DIR);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| ModelSourceError::io("create", &dir, e))?;
        let path = dir.join(format!("{}.json", source_key(source, mlflow)));
        let staging = self
            .shared
            .dir
            .join(TMP_DIR)
            .join(format!("tokenizer-{}", uuid::Uuid::new_v4()));
        let fetched = self.download_tokenizer(source, mlflow, &staging).await;
        let result = match fetched {
            Ok(file) => tokio::fs::rename(&file, &path)
                .await
                .map(|()| path)
                .map_err(|e| ModelSourceError::io("store", &file, e)),
            Err(error) if error.is_transient() && path.is_file() => {
                tracing::warn!(tokenizer = %source, "{error}; using the copy downloaded before");
                Ok(path)
            }
            Err(error) => Err(error),
        };
        let _ = tokio::fs::remove_dir_all(&staging).await;
        result
    }

    /// Downloads the tokenizer into `staging`; returns the file's path.
    async fn download_tokenizer(
        &self,
        source: &RemoteTokenizer,
        mlflow: Option<&MlflowConfig>,
        staging: &Path,
    ) -> Result<PathBuf, ModelSourceError> {
        tokio::fs::create_dir_all(staging)
            .await
            .map_err(|e| ModelSourceError::io("create", staging, e))?;
        match source {
            RemoteTokenizer::Url(url) => {
                let target = staging.join(TOKENIZER_FILE);
                self.download_url(url, &target).await?;
                Ok(target)
            }
            RemoteTokenizer::Mlflow { folder, file } => {
                let Some(mlflow) = mlflow else {
                    return Err(ModelSourceError::NoTrackingServer {
                        uri: source.to_string(),
                    });
                };
                let client = RegistryClient::new(mlflow.clone(), self.shared.http.clone())
                    .with_retry(self.retry);
                let resolved = client.resolve(folder).await?;
                let files = client.list_files(&resolved.location).await?;
                let wanted: Vec<&str> = match file {
                    Some(file) => vec![file.as_str()],
                    None => TOKENIZER_PLACES.to_vec(),
                };
                let Some(chosen) = wanted
                    .iter()
                    .find_map(|w| files.iter().find(|f| f.path == *w))
                else {
                    return Err(ModelSourceError::NotFound {
                        detail: format!(
                            "{source} has no {} (looked for {}; the folder holds {})",
                            file.as_deref().unwrap_or(TOKENIZER_FILE),
                            wanted.join(", "),
                            listing(&files)
                        ),
                    });
                };
                if chosen.size.is_some_and(|s| s > MAX_TOKENIZER_FILE_BYTES) {
                    return Err(too_large(source));
                }
                client
                    .download(
                        &resolved.location,
                        std::slice::from_ref(chosen),
                        staging,
                        None,
                    )
                    .await?;
                Ok(staging.join(&chosen.path))
            }
        }
    }

    /// GETs `url` into `target`, at most [`MAX_TOKENIZER_FILE_BYTES`].
    async fn download_url(&self, url: &url::Url, target: &Path) -> Result<(), ModelSourceError> {
        let shown = display_url(url);
        let failed = |detail: String, transient: bool| ModelSourceError::Tokenizer {
            from: shown.clone(),
            detail,
            transient,
        };
        let response = self
            .shared
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| failed(e.without_url().to_string(), true))?;
        let status = response.status();
        if !status.is_success() {
            let transient = status.is_server_error() || status.as_u16() == 429;
            return Err(failed(format!("HTTP {status}"), transient));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_TOKENIZER_FILE_BYTES)
        {
            return Err(failed(too_large_text(), false));
        }
        let mut out = tokio::fs::File::create(target)
            .await
            .map_err(|e| ModelSourceError::io("create", target, e))?;
        let mut size = 0u64;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| failed(e.without_url().to_string(), true))?;
            size += chunk.len() as u64;
            if size > MAX_TOKENIZER_FILE_BYTES {
                return Err(failed(too_large_text(), false));
            }
            out.write_all(&chunk)
                .await
                .map_err(|e| ModelSourceError::io("write", target, e))?;
        }
        out.flush()
            .await
            .map_err(|e| ModelSourceError::io("write", target, e))
    }
}

/// One file per source and tracking server.
fn source_key(source: &RemoteTokenizer, mlflow: Option<&MlflowConfig>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"cls-tokenizer/v1\n");
    if let (RemoteTokenizer::Mlflow { .. }, Some(mlflow)) = (source, mlflow) {
        hasher.update(mlflow.display_uri().as_bytes());
        hasher.update(b"\n");
    }
    hasher.update(source.to_string().as_bytes());
    hex::encode(hasher.finalize())
}

fn too_large_text() -> String {
    format!(
        "the file is larger than the {} a tokenizer may take",
        crate::size::human(MAX_TOKENIZER_FILE_BYTES)
    )
}

fn too_large(source: &RemoteTokenizer) -> ModelSourceError {
    ModelSourceError::Tokenizer {
        from: source.to_string(),
        detail: too_large_text(),
        transient: false,
    }
}

/// A remote folder's files, for an error message.
fn listing(files: &[RemoteFile]) -> String {
    if files.is_empty() {
        return "no files".to_owned();
    }
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    short_list(&paths)
}
