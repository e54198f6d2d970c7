//! Listing a model folder on the artifact proxy (recursively, bounded in
//! depth and count, refusing unsafe names) and downloading its files with
//! size checks, SHA-256 hashing, progress reports and per-file retries.

use std::path::Path;
use std::time::Instant;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::client::{Attempt, describe_reqwest, endpoint};
use super::resolve::{not_found, server_says};
use super::wire::ListArtifactsResponse;
use super::{
    ArtifactLocation, DownloadedFile, LOG_EVERY, MAX_DEPTH, MAX_FILES, ProgressFn, RegistryClient,
    RemoteFile,
};
use crate::model::source::{ModelSourceError, display_url};

impl RegistryClient {
    /// Lists every file under `location`, recursively, sorted by path.
    pub async fn list_files(
        &self,
        location: &ArtifactLocation,
    ) -> Result<Vec<RemoteFile>, ModelSourceError> {
        let mut files = Vec::new();
        let mut pending = vec![(String::new(), 0usize)];
        while let Some((dir, depth)) = pending.pop() {
            for entry in self.list_level(location, &dir).await? {
                let path = if dir.is_empty() {
                    entry.name
                } else {
                    format!("{dir}/{}", entry.name)
                };
                if entry.is_dir {
                    if depth + 1 >= MAX_DEPTH {
                        return Err(self.bad_listing(
                            location,
                            format!("folders nested deeper than {MAX_DEPTH}"),
                        ));
                    }
                    pending.push((path, depth + 1));
                } else {
                    files.push(RemoteFile {
                        path,
                        size: entry.size,
                    });
                }
                if files.len() + pending.len() > MAX_FILES {
                    return Err(self.bad_listing(location, format!("more than {MAX_FILES} files")));
                }
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    pub(super) fn bad_listing(
        &self,
        location: &ArtifactLocation,
        detail: String,
    ) -> ModelSourceError {
        ModelSourceError::BadResponse {
            tracking_uri: display_url(&location.server),
            request: "GET /api/2.0/mlflow-artifacts/artifacts".to_owned(),
            detail: format!("{}: {detail}", location.path),
        }
    }

    /// One level of the artifact listing under `location/dir`.
    pub(super) async fn list_level(
        &self,
        location: &ArtifactLocation,
        dir: &str,
    ) -> Result<Vec<ListedEntry>, ModelSourceError> {
        let path = join_path(&location.path, dir);
        let url = endpoint(
            &location.server,
            &["api", "2.0", "mlflow-artifacts", "artifacts"],
        );
        let listing: ListArtifactsResponse = self
            .json_request(
                reqwest::Method::GET,
                url,
                &[("path", &path)],
                None,
                "GET /api/2.0/mlflow-artifacts/artifacts",
            )
            .await
            .map_err(not_found(|m| {
                format!(
                    "no artifacts at {path} on the MLflow tracking server at {}{m}",
                    display_url(&location.server)
                )
            }))?;
        listing
            .files
            .into_iter()
            .map(|file| {
                // MLflow sends base names; take the last segment to be safe.
                let name = file.path.rsplit('/').next().unwrap_or_default().to_owned();
                if name.is_empty() || name == "." || name == ".." || name.contains('\\') {
                    return Err(
                        self.bad_listing(location, format!("unsafe file name {:?}", file.path))
                    );
                }
                Ok(ListedEntry {
                    name,
                    is_dir: file.is_dir,
                    size: file.file_size.as_ref().and_then(json_u64),
                })
            })
            .collect()
    }

    /// Downloads `files` from `location` into `dest` (keeping their relative
    /// paths), verifying sizes, hashing as it goes, retrying each file.
    pub async fn download(
        &self,
        location: &ArtifactLocation,
        files: &[RemoteFile],
        dest: &Path,
        progress: Option<&ProgressFn>,
    ) -> Result<Vec<DownloadedFile>, ModelSourceError> {
        let total: u64 = files.iter().filter_map(|f| f.size).sum();
        let mut done = 0u64;
        let mut downloaded = Vec::with_capacity(files.len());
        for file in files {
            let target = dest.join(&file.path);
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| ModelSourceError::io("create", parent, e))?;
            }
            let got = self
                .with_retries(&format!("download of {}", file.path), || {
                    self.download_once(location, file, &target, (done, total), progress)
                })
                .await?;
            done += got.size;
            downloaded.push(got);
        }
        Ok(downloaded)
    }

    pub(super) async fn download_once(
        &self,
        location: &ArtifactLocation,
        file: &RemoteFile,
        target: &Path,
        (done_before, total): (u64, u64),
        progress: Option<&ProgressFn>,
    ) -> Result<DownloadedFile, Attempt> {
        let server = display_url(&location.server);
        let mut url = endpoint(
            &location.server,
            &["api", "2.0", "mlflow-artifacts", "artifacts"],
        );
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .extend(location.path.split('/'))
                .extend(file.path.split('/'));
        }
        let request = "GET /api/2.0/mlflow-artifacts/artifacts/…";
        let response = self
            .send(reqwest::Method::GET, url, &[], None, request, None)
            .await?;
        let response = self.check_status(response, request, &server).await.map_err(|e| match e {
            Attempt::Fail(ModelSourceError::NotFound { detail }) => Attempt::Fail(ModelSourceError::NotFound {
                detail: format!(
                    "{} is listed but cannot be downloaded from the MLflow tracking server at {server}{}",
                    file.path,
                    server_says(&detail)
                ),
            }),
            other => other,
        })?;
        let expected = file.size.or(response.content_length());
        let download_error = |detail: String| ModelSourceError::Download {
            tracking_uri: server.clone(),
            file: file.path.clone(),
            detail,
        };
        let mut out = tokio::fs::File::create(target)
            .await
            .map(tokio::io::BufWriter::new)
            .map_err(|e| Attempt::Fail(ModelSourceError::io("create", target, e)))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut last_log = Instant::now();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Attempt::Retry(download_error(describe_reqwest(&e))))?;
            out.write_all(&chunk)
                .await
                .map_err(|e| Attempt::Fail(ModelSourceError::io("write", target, e)))?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            if let Some(progress) = progress {
                progress(done_before + size, total.max(done_before + size));
            }
            if last_log.elapsed() >= LOG_EVERY {
                last_log = Instant::now();
                let of = expected.map_or_else(|| "?".to_owned(), |e| e.to_string());
                tracing::info!(file = %file.path, "downloading {}: {size}/{of}", file.path);
            }
        }
        out.flush()
            .await
            .map_err(|e| Attempt::Fail(ModelSourceError::io("write", target, e)))?;
        if let Some(expected) = expected
            && size != expected
        {
            return Err(Attempt::Retry(download_error(format!(
                "received {size} bytes, expected {expected}"
            ))));
        }
        tracing::debug!(file = %file.path, size, "downloaded");
        Ok(DownloadedFile {
            path: file.path.clone(),
            size,
            sha256: hex::encode(hasher.finalize()),
        })
    }
}

pub(super) fn join_path(base: &str, rel: &str) -> String {
    match (base.is_empty(), rel.is_empty()) {
        (_, true) => base.to_owned(),
        (true, false) => rel.to_owned(),
        (false, false) => format!("{base}/{rel}"),
    }
}

pub(super) fn json_u64(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

pub(super) struct ListedEntry {
    pub(super) name: String,
    pub(super) is_dir: bool,
    pub(super) size: Option<u64>,
}
