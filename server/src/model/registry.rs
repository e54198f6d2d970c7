//! The MLflow REST client: resolves registry, run and artifact URIs to the
//! folder of files the tracking server proxies, lists that folder and
//! downloads every file in it.
//!
//! Follows the request chains of the MLflow 3 client: aliases through
//! `registered-models/alias`, `latest` and stages through
//! `get-latest-versions`, versions through `model-versions/get`, and always
//! `model-versions/get-download-uri` for the location (a version's `source`
//! is never parsed). Connection errors, 429 and 5xx are retried with
//! exponential backoff; other 4xx are not. Owns no disk state: where files go
//! is decided by [`crate::model::ModelCache`].

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use url::Url;

use super::source::{MlflowAuth, MlflowConfig, ModelSourceError, ModelUri, display_url};

/// Progress of a model download: `(bytes done, bytes expected)` over all of
/// the model's files. Called after every received chunk.
pub type ProgressFn = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Default number of tries per request (1 + 3 retries).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// Default wait before the first retry; doubled for each further retry.
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// Default longest wait between retries.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(8);
/// Timeout for connecting to the tracking server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout for one registry (JSON) request.
pub const API_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest silence while a download's body is streaming.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Most files a model folder may have.
pub const MAX_FILES: usize = 10_000;
/// Deepest folder nesting followed when listing a model folder.
const MAX_DEPTH: usize = 16;
/// How often a download logs its progress.
const LOG_EVERY: Duration = Duration::from_secs(1);
/// Most pages of `logged-models/search` read for one `runs:/` URI.
const MAX_SEARCH_PAGES: usize = 20;

/// How failed requests are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries per request, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Wait before the first retry.
    pub initial_backoff: Duration,
    /// Longest wait between retries.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

/// Builds the HTTP client shared by registry calls and downloads.
pub fn http_client() -> Result<reqwest::Client, ModelSourceError> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .user_agent(concat!(
            "configurable-ls-backend/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
        .map_err(|e| ModelSourceError::HttpClient(e.to_string()))
}

/// A client for one MLflow tracking server.
#[derive(Clone, Debug)]
pub struct RegistryClient {
    http: reqwest::Client,
    config: MlflowConfig,
    retry: RetryPolicy,
}

/// Where the artifact proxy serves a folder: `<server>/api/2.0/mlflow-artifacts/artifacts/<path>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactLocation {
    /// The server's base URL (the tracking URI, or its host replaced by the
    /// `//host:port` of an `mlflow-artifacts:` URI).
    pub server: Url,
    /// The folder under the proxy, without leading or trailing `/`.
    pub path: String,
}

/// A model URI resolved to the folder holding its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    /// For people, e.g. `models:/orientation@champion (version 2, run 4b1c…)`.
    pub description: String,
    /// The registered model name, for registry URIs.
    pub name: Option<String>,
    /// The registered version, for registry URIs.
    pub version: Option<String>,
    /// The run that produced the model, when MLflow says.
    pub run_id: Option<String>,
    /// The artifact URI MLflow reported, e.g. `mlflow-artifacts:/1/models/m-…/artifacts`.
    pub artifact_uri: String,
    /// Where to list and download the files.
    pub location: ArtifactLocation,
}

/// One file of a remote model folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Path relative to the model folder, `/`-separated.
    pub path: String,
    /// Size reported by the listing, when reported.
    pub size: Option<u64>,
}

/// One downloaded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadedFile {
    /// Path relative to the model folder, `/`-separated.
    pub path: String,
    /// Bytes written.
    pub size: u64,
    /// Lower-case hex sha256 of the bytes written.
    pub sha256: String,
}

/// The outcome of one try of a request.
enum Attempt {
    /// May pass on another try (connection error, 5xx, interrupted body).
    Retry(ModelSourceError),
    /// Will not pass on another try.
    Fail(ModelSourceError),
}

impl RegistryClient {
    /// A client for `config` using `http` (see [`http_client`]) and the
    /// default [`RetryPolicy`].
    pub fn new(config: MlflowConfig, http: reqwest::Client) -> Self {
        Self {
            http,
            config,
            retry: RetryPolicy::default(),
        }
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The server this client talks to.
    pub fn config(&self) -> &MlflowConfig {
        &self.config
    }

    fn server(&self) -> String {
        self.config.display_uri()
    }

    /// Resolves a registry, run, logged-model or `mlflow-artifacts:` URI to
    /// the folder holding the model's files.
    pub async fn resolve(&self, uri: &ModelUri) -> Result<ResolvedModel, ModelSourceError> {
        let server = self.server();
        match uri {
            ModelUri::ModelVersion { name, version } => {
                let version = version.to_string();
                let mv: ModelVersionResponse = self
                    .get_json(
                        &["mlflow", "model-versions", "get"],
                        &[("name", name), ("version", &version)],
                    )
                    .await
                    .map_err(not_found(|m| {
                        format!(
                            "model '{name}' has no version {version} in the registry at {server}{m}"
                        )
                    }))?;
                self.registered(uri, name, mv.model_version).await
            }
            ModelUri::ModelAlias { name, alias } => {
                let mv: ModelVersionResponse = self
                    .get_json(
                        &["mlflow", "registered-models", "alias"],
                        &[("name", name), ("alias", alias)],
                    )
                    .await
                    .map_err(not_found(|m| {
                        format!(
                            "model '{name}' has no alias '{alias}' in the registry at {server}{m}"
                        )
                    }))?;
                self.registered(uri, name, mv.model_version).await
            }
            ModelUri::LatestVersion { name } => self.latest(uri, name, None).await,
            ModelUri::Stage { name, stage } => self.latest(uri, name, Some(stage)).await,
            ModelUri::LoggedModel { model_id } => {
                let model: LoggedModelResponse = self
                    .get_json(&["mlflow", "logged-models", model_id], &[])
                    .await
                    .map_err(not_found(|m| {
                        format!("logged model '{model_id}' does not exist at the MLflow tracking server at {server}{m}")
                    }))?;
                let info = model.model.info;
                let artifact_uri =
                    required(info.artifact_uri, &server, "logged-models", "artifact_uri")?;
                Ok(ResolvedModel {
                    description: describe(uri, None, info.source_run_id.as_deref()),
                    name: None,
                    version: None,
                    location: self.location(&artifact_uri, uri)?,
                    run_id: info.source_run_id,
                    artifact_uri,
                })
            }
            ModelUri::RunArtifact { run_id, path } => self.run_artifact(uri, run_id, path).await,
            ModelUri::MlflowArtifacts { .. } => {
                let artifact_uri = uri.to_string();
                Ok(ResolvedModel {
                    description: artifact_uri.clone(),
                    name: None,
                    version: None,
                    run_id: None,
                    location: self.location(&artifact_uri, uri)?,
                    artifact_uri,
                })
            }
            ModelUri::LocalDir(_) | ModelUri::OnnxFile(_) | ModelUri::Upload { .. } => {
                Err(ModelSourceError::InvalidUri {
                    uri: uri.to_string(),
                    reason: "not an MLflow URI; local models and uploads are read from disk"
                        .to_owned(),
                })
            }
        }
    }

    async fn latest(
        &self,
        uri: &ModelUri,
        name: &str,
        stage: Option<&str>,
    ) -> Result<ResolvedModel, ModelSourceError> {
        let server = self.server();
        let mut body = serde_json::json!({ "name": name });
        if let Some(stage) = stage {
            body["stages"] = serde_json::json!([stage]);
        }
        let latest: LatestVersionsResponse = self
            .call_json(
                reqwest::Method::POST,
                &["mlflow", "registered-models", "get-latest-versions"],
                &[],
                Some(&body),
            )
            .await
            .map_err(not_found(|m| {
                format!("model '{name}' is not in the registry at {server}{m}")
            }))?;
        // mlflow `_get_latest_model_version`: the highest version number.
        let newest = latest
            .model_versions
            .into_iter()
            .filter_map(|mv| Some((mv.version.as_deref()?.parse::<u64>().ok()?, mv)))
            .max_by_key(|(number, _)| *number)
            .map(|(_, mv)| mv);
        match newest {
            Some(mv) => self.registered(uri, name, mv).await,
            None => Err(ModelSourceError::NotFound {
                detail: match stage {
                    Some(stage) => format!(
                        "model '{name}' has no version in stage '{stage}' in the registry at {server}"
                    ),
                    None => format!("model '{name}' has no versions in the registry at {server}"),
                },
            }),
        }
    }

    /// Finishes resolving a registered version: asks where its files are.
    async fn registered(
        &self,
        uri: &ModelUri,
        name: &str,
        mv: ModelVersion,
    ) -> Result<ResolvedModel, ModelSourceError> {
        let server = self.server();
        let version = required(mv.version, &server, "model-versions", "version")?;
        let download: DownloadUriResponse = self
            .get_json(
                &["mlflow", "model-versions", "get-download-uri"],
                &[("name", name), ("version", &version)],
            )
            .await
            .map_err(not_found(|m| {
                format!("model '{name}' has no version {version} in the registry at {server}{m}")
            }))?;
        let artifact_uri = required(
            download.artifact_uri,
            &server,
            "model-versions/get-download-uri",
            "artifact_uri",
        )?;
        let shown_version = match uri {
            ModelUri::ModelVersion { .. } => None,
            _ => Some(version.as_str()),
        };
        Ok(ResolvedModel {
            description: describe(uri, shown_version, mv.run_id.as_deref()),
            location: self.location(&artifact_uri, uri)?,
            name: Some(name.to_owned()),
            version: Some(version),
            run_id: mv.run_id.filter(|r| !r.is_empty()),
            artifact_uri,
        })
    }

    /// `runs:/<run>/<path>`: the run's artifacts under `path`, or (MLflow 3)
    /// the model that run logged under the name `path`.
    async fn run_artifact(
        &self,
        uri: &ModelUri,
        run_id: &str,
        path: &str,
    ) -> Result<ResolvedModel, ModelSourceError> {
        let server = self.server();
        let run: RunResponse = self
            .get_json(&["mlflow", "runs", "get"], &[("run_id", run_id)])
            .await
            .map_err(not_found(|m| {
                format!(
                    "run '{run_id}' does not exist at the MLflow tracking server at {server}{m}"
                )
            }))?;
        let root = required(
            run.run.info.artifact_uri,
            &server,
            "runs/get",
            "artifact_uri",
        )?;
        let artifact_uri = if path.is_empty() {
            root
        } else {
            format!("{}/{path}", root.trim_end_matches('/'))
        };
        let run_location = self.location(&artifact_uri, uri);
        if let Ok(location) = &run_location
            && !self.list_level(location, "").await?.is_empty()
        {
            return Ok(ResolvedModel {
                description: uri.to_string(),
                name: None,
                version: None,
                run_id: Some(run_id.to_owned()),
                location: location.clone(),
                artifact_uri,
            });
        }
        if let Some(experiment_id) = run.run.info.experiment_id.filter(|_| !path.is_empty()) {
            let (model_name, rest) = path.split_once('/').unwrap_or((path, ""));
            if let Some(model_uri) = self
                .find_logged_model(&experiment_id, run_id, model_name)
                .await?
            {
                let artifact_uri = if rest.is_empty() {
                    model_uri
                } else {
                    format!("{}/{rest}", model_uri.trim_end_matches('/'))
                };
                return Ok(ResolvedModel {
                    description: uri.to_string(),
                    name: None,
                    version: None,
                    run_id: Some(run_id.to_owned()),
                    location: self.location(&artifact_uri, uri)?,
                    artifact_uri,
                });
            }
        }
        match run_location {
            Err(not_proxied) => Err(not_proxied),
            Ok(_) => Err(ModelSourceError::NotFound {
                detail: format!(
                    "run '{run_id}' has no artifacts at '{path}' and logged no model named '{path}' \
                     at the MLflow tracking server at {server}"
                ),
            }),
        }
    }

    /// The artifact URI of the model `run_id` logged as `name` (MLflow 3
    /// `RunsArtifactRepository._get_logged_model_artifact_repo`), if any.
    async fn find_logged_model(
        &self,
        experiment_id: &str,
        run_id: &str,
        name: &str,
    ) -> Result<Option<String>, ModelSourceError> {
        if name.contains('\'') {
            return Ok(None);
        }
        let mut page_token: Option<String> = None;
        for _ in 0..MAX_SEARCH_PAGES {
            let mut body = serde_json::json!({
                "experiment_ids": [experiment_id],
                "filter": format!("name = '{name}'"),
                "max_results": 100,
            });
            if let Some(token) = &page_token {
                body["page_token"] = serde_json::json!(token);
            }
            let page: SearchLoggedModelsResponse = match self
                .call_json(
                    reqwest::Method::POST,
                    &["mlflow", "logged-models", "search"],
                    &[],
                    Some(&body),
                )
                .await
            {
                Ok(page) => page,
                // Servers before MLflow 3 have no logged models.
                Err(ModelSourceError::NotFound { .. }) => return Ok(None),
                Err(ModelSourceError::Http { status: 404, .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            if let Some(found) = page
                .models
                .into_iter()
                .find(|m| m.info.source_run_id.as_deref() == Some(run_id))
            {
                return Ok(found.info.artifact_uri);
            }
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(token) => page_token = Some(token),
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Maps an artifact URI to the proxy location serving it, or explains
    /// why the artifacts cannot be reached through the tracking server.
    fn location(
        &self,
        artifact_uri: &str,
        model: &ModelUri,
    ) -> Result<ArtifactLocation, ModelSourceError> {
        let not_proxied = || ModelSourceError::ArtifactsNotProxied {
            tracking_uri: self.server(),
            model: model.to_string(),
            artifact_uri: artifact_uri.to_owned(),
        };
        let is_proxied = artifact_uri
            .get(..17)
            .is_some_and(|s| s.eq_ignore_ascii_case("mlflow-artifacts:"));
        if !is_proxied {
            return Err(not_proxied());
        }
        let Ok(ModelUri::MlflowArtifacts { authority, path }) = ModelUri::parse(artifact_uri)
        else {
            return Err(ModelSourceError::BadResponse {
                tracking_uri: self.server(),
                request: "model resolution".to_owned(),
                detail: format!("unusable artifact URI {artifact_uri:?}"),
            });
        };
        let mut server = self.config.tracking_uri.clone();
        if let Some(authority) = authority {
            // mlflow `MlflowArtifactsRepository.resolve_uri`: the tracking
            // URI's scheme and path with the artifact URI's host and port.
            let with_host =
                Url::parse(&format!("{}://{authority}", server.scheme())).map_err(|_| {
                    ModelSourceError::BadResponse {
                        tracking_uri: self.server(),
                        request: "model resolution".to_owned(),
                        detail: format!("unusable host in artifact URI {artifact_uri:?}"),
                    }
                })?;
            let _ = server.set_host(with_host.host_str());
            let _ = server.set_port(with_host.port());
        }
        Ok(ArtifactLocation { server, path })
    }

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

    fn bad_listing(&self, location: &ArtifactLocation, detail: String) -> ModelSourceError {
        ModelSourceError::BadResponse {
            tracking_uri: display_url(&location.server),
            request: "GET /api/2.0/mlflow-artifacts/artifacts".to_owned(),
            detail: format!("{}: {detail}", location.path),
        }
    }

    /// One level of the artifact listing under `location/dir`.
    async fn list_level(
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

    async fn download_once(
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

    async fn get_json<T: DeserializeOwned>(
        &self,
        api: &[&str],
        query: &[(&str, &str)],
    ) -> Result<T, ModelSourceError> {
        self.call_json(reqwest::Method::GET, api, query, None).await
    }

    /// Calls `/api/2.0/<api…>` on the tracking server.
    async fn call_json<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        api: &[&str],
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<T, ModelSourceError> {
        let mut segments = vec!["api", "2.0"];
        segments.extend_from_slice(api);
        let request = format!("{method} /{}", segments.join("/"));
        let url = endpoint(&self.config.tracking_uri, &segments);
        self.json_request(method, url, query, body, &request).await
    }

    async fn json_request<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        url: Url,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
        request: &str,
    ) -> Result<T, ModelSourceError> {
        let server = display_url(&url_base(&url, &self.config.tracking_uri));
        let bytes = self
            .with_retries(request, || async {
                let response = self
                    .send(
                        method.clone(),
                        url.clone(),
                        query,
                        body,
                        request,
                        Some(API_TIMEOUT),
                    )
                    .await?;
                let response = self.check_status(response, request, &server).await?;
                response.bytes().await.map_err(|e| {
                    Attempt::Retry(ModelSourceError::Unreachable {
                        tracking_uri: server.clone(),
                        detail: describe_reqwest(&e),
                    })
                })
            })
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| ModelSourceError::BadResponse {
            tracking_uri: server.clone(),
            request: request.to_owned(),
            detail: format!("{e} (is {server} an MLflow tracking server?)"),
        })
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retry budget
    /// is spent.
    async fn with_retries<T, F, Fut>(
        &self,
        what: &str,
        mut attempt: F,
    ) -> Result<T, ModelSourceError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Attempt>>,
    {
        let mut backoff = self.retry.initial_backoff;
        let max_attempts = self.retry.max_attempts.max(1);
        let mut tries = 1;
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(Attempt::Fail(error)) => return Err(error),
                Err(Attempt::Retry(error)) if tries >= max_attempts => return Err(error),
                Err(Attempt::Retry(error)) => {
                    tracing::warn!(
                        attempt = tries,
                        of = max_attempts,
                        retry_in_ms = backoff.as_millis() as u64,
                        "{what} failed, retrying: {error}"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.retry.max_backoff);
                    tries += 1;
                }
            }
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: Url,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
        request: &str,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, Attempt> {
        let server = display_url(&url_base(&url, &self.config.tracking_uri));
        let mut builder = self.http.request(method, url);
        if !query.is_empty() {
            builder = builder.query(query);
        }
        if let Some(body) = body {
            builder = builder.json(body);
        }
        if let Some(timeout) = timeout {
            builder = builder.timeout(timeout);
        }
        builder = match &self.config.auth {
            MlflowAuth::None => builder,
            MlflowAuth::Basic { username, password } => {
                builder.basic_auth(username, Some(password.expose()))
            }
            MlflowAuth::Bearer(token) => builder.bearer_auth(token.expose()),
        };
        builder.send().await.map_err(|e| {
            let error = ModelSourceError::Unreachable {
                tracking_uri: server,
                detail: describe_reqwest(&e),
            };
            if e.is_builder() || e.is_redirect() {
                tracing::debug!(request, "request could not be sent");
                Attempt::Fail(error)
            } else {
                Attempt::Retry(error)
            }
        })
    }

    /// Turns error statuses into errors: 401/403 and other 4xx fail at once,
    /// 429 and 5xx may be retried.
    async fn check_status(
        &self,
        response: reqwest::Response,
        request: &str,
        server: &str,
    ) -> Result<reqwest::Response, Attempt> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(Attempt::Fail(self.unauthorized(status.as_u16(), server)));
        }
        let is_json = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        let body = response.bytes().await.unwrap_or_default();
        let mlflow: Option<MlflowErrorBody> = if is_json || body.starts_with(b"{") {
            serde_json::from_slice(&body).ok()
        } else {
            None
        };
        let message = mlflow
            .as_ref()
            .and_then(|e| e.message.clone())
            .map(|m| truncate(&m, 300));
        // MLflow answers a missing alias with 400 INVALID_PARAMETER_VALUE
        // "Registered model alias … not found.".
        let resource_missing = mlflow
            .as_ref()
            .is_some_and(|e| match e.error_code.as_deref() {
                Some("RESOURCE_DOES_NOT_EXIST") => true,
                Some("INVALID_PARAMETER_VALUE") => e
                    .message
                    .as_deref()
                    .is_some_and(|m| m.trim_end_matches('.').ends_with("not found")),
                _ => false,
            });
        if resource_missing || (status == reqwest::StatusCode::NOT_FOUND && mlflow.is_some()) {
            return Err(Attempt::Fail(ModelSourceError::NotFound {
                detail: message.unwrap_or_default(),
            }));
        }
        let detail = match (&message, status) {
            (Some(m), _) => format!(": {m}"),
            (None, reqwest::StatusCode::NOT_FOUND) => format!(
                " (is {server} an MLflow tracking server? A DagsHub tracking URI ends in .mlflow)"
            ),
            (None, _) => String::new(),
        };
        let error = ModelSourceError::Http {
            tracking_uri: server.to_owned(),
            status: status.as_u16(),
            request: request.to_owned(),
            detail,
        };
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Err(Attempt::Retry(error))
        } else {
            Err(Attempt::Fail(error))
        }
    }

    fn unauthorized(&self, status: u16, server: &str) -> ModelSourceError {
        let hint = match (&self.config.auth, status) {
            (MlflowAuth::None, _) => "; set `username` and `password` (or `token`) in the backend config, \
                 or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
                .to_owned(),
            (_, 403) => "; the credentials were accepted but lack permission to read this model".to_owned(),
            (MlflowAuth::Basic { .. }, _) => {
                "; check the username and password (MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD; \
                 on DagsHub the password is an access token)"
                    .to_owned()
            }
            (MlflowAuth::Bearer(_), _) => "; check the token (MLFLOW_TRACKING_TOKEN); `mlflow server --app-name \
                 basic-auth` accepts basic auth only, so set a username and password instead"
                .to_owned(),
        };
        ModelSourceError::Unauthorized {
            tracking_uri: server.to_owned(),
            auth: self.config.auth.to_string(),
            credentials_sent: self.config.auth != MlflowAuth::None,
            status,
            hint,
        }
    }
}

/// Rewrites a `NotFound` carrying MLflow's message into one naming the
/// missing thing; `message` gets ` (MLflow: …)` or an empty string.
fn not_found(
    message: impl FnOnce(String) -> String,
) -> impl FnOnce(ModelSourceError) -> ModelSourceError {
    move |error| match error {
        ModelSourceError::NotFound { detail } => ModelSourceError::NotFound {
            detail: message(server_says(&detail)),
        },
        other => other,
    }
}

fn server_says(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" (MLflow: {detail})")
    }
}

fn required(
    value: Option<String>,
    server: &str,
    call: &str,
    field: &str,
) -> Result<String, ModelSourceError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ModelSourceError::BadResponse {
            tracking_uri: server.to_owned(),
            request: call.to_owned(),
            detail: format!("no `{field}` in the answer"),
        })
}

fn describe(uri: &ModelUri, version: Option<&str>, run_id: Option<&str>) -> String {
    let run_id = run_id.filter(|r| !r.is_empty());
    match (version, run_id) {
        (Some(v), Some(r)) => format!("{uri} (version {v}, run {r})"),
        (Some(v), None) => format!("{uri} (version {v})"),
        (None, Some(r)) => format!("{uri} (run {r})"),
        (None, None) => uri.to_string(),
    }
}

/// `base` with `segments` appended to its path (percent-encoded).
fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// The server part of `url` for messages: the tracking URI when `url` is on
/// it, else `url`'s origin.
fn url_base(url: &Url, tracking: &Url) -> Url {
    if url.origin() == tracking.origin() {
        tracking.clone()
    } else {
        let mut origin = url.clone();
        origin.set_path("");
        origin.set_query(None);
        origin
    }
}

fn join_path(base: &str, rel: &str) -> String {
    match (base.is_empty(), rel.is_empty()) {
        (_, true) => base.to_owned(),
        (true, false) => rel.to_owned(),
        (false, false) => format!("{base}/{rel}"),
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}…")
    }
}

/// A short cause for a transport error: `connection refused`, `timed out`,
/// or the innermost error's message.
fn describe_reqwest(error: &reqwest::Error) -> String {
    let mut innermost: &dyn std::error::Error = error;
    let mut source = std::error::Error::source(error);
    while let Some(next) = source {
        if let Some(io) = next.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".to_owned(),
                std::io::ErrorKind::ConnectionReset => return "connection reset".to_owned(),
                std::io::ErrorKind::TimedOut => return "timed out".to_owned(),
                _ => {}
            }
        }
        innermost = next;
        source = next.source();
    }
    if error.is_timeout() {
        return "timed out".to_owned();
    }
    innermost.to_string()
}

fn json_u64(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

struct ListedEntry {
    name: String,
    is_dir: bool,
    size: Option<u64>,
}

#[derive(Deserialize)]
struct MlflowErrorBody {
    error_code: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct ModelVersionResponse {
    model_version: ModelVersion,
}

#[derive(Deserialize)]
struct ModelVersion {
    #[serde(default, deserialize_with = "string_or_number")]
    version: Option<String>,
    #[serde(default)]
    run_id: Option<String>,
}

#[derive(Deserialize)]
struct LatestVersionsResponse {
    #[serde(default)]
    model_versions: Vec<ModelVersion>,
}

#[derive(Deserialize)]
struct DownloadUriResponse {
    artifact_uri: Option<String>,
}

#[derive(Deserialize)]
struct RunResponse {
    run: Run,
}

#[derive(Deserialize)]
struct Run {
    info: RunInfo,
}

#[derive(Deserialize)]
struct RunInfo {
    artifact_uri: Option<String>,
    #[serde(default)]
    experiment_id: Option<String>,
}

#[derive(Deserialize)]
struct LoggedModelResponse {
    model: LoggedModel,
}

#[derive(Deserialize)]
struct LoggedModel {
    info: LoggedModelInfo,
}

#[derive(Deserialize)]
struct LoggedModelInfo {
    artifact_uri: Option<String>,
    #[serde(default)]
    source_run_id: Option<String>,
}

#[derive(Deserialize)]
struct SearchLoggedModelsResponse {
    #[serde(default)]
    models: Vec<LoggedModel>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct ListArtifactsResponse {
    #[serde(default)]
    files: Vec<ListedFile>,
}

#[derive(Deserialize)]
struct ListedFile {
    path: String,
    #[serde(default)]
    is_dir: bool,
    #[serde(default)]
    file_size: Option<serde_json::Value>,
}

fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::get;

    use super::*;
    use crate::secret::Secret;

    const FAST: RetryPolicy = RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
    };

    /// Serves `app` on 127.0.0.1:0 and returns its base URL.
    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}")
    }

    fn client(uri: &str, auth: MlflowAuth) -> RegistryClient {
        RegistryClient::new(
            MlflowConfig::new(uri, auth).unwrap(),
            http_client().unwrap(),
        )
        .with_retry(FAST)
    }

    fn version_uri() -> ModelUri {
        ModelUri::parse("models:/orientation/2").unwrap()
    }

    #[derive(Clone, Default)]
    struct Counts {
        get: Arc<AtomicUsize>,
        download_uri: Arc<AtomicUsize>,
    }

    /// `model-versions/get` fails with 500 `fail_first` times, then answers.
    fn flaky_registry(counts: Counts, fail_first: usize) -> Router {
        Router::new()
            .route(
                "/api/2.0/mlflow/model-versions/get",
                get(move |State(c): State<Counts>| async move {
                    if c.get.fetch_add(1, Ordering::SeqCst) < fail_first {
                        return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
                    }
                    axum::Json(serde_json::json!({
                        "model_version": {"name": "orientation", "version": "2", "run_id": "4b1c", "status": "READY",
                                          "source": "models:/m-123"}
                    }))
                    .into_response()
                }),
            )
            .route(
                "/api/2.0/mlflow/model-versions/get-download-uri",
                get(|State(c): State<Counts>| async move {
                    c.download_uri.fetch_add(1, Ordering::SeqCst);
                    axum::Json(serde_json::json!({"artifact_uri": "mlflow-artifacts:/1/models/m-123/artifacts"}))
                }),
            )
            .with_state(counts)
    }

    #[tokio::test]
    async fn a_500_then_success_is_retried() {
        let counts = Counts::default();
        let base = serve(flaky_registry(counts.clone(), 1)).await;
        let resolved = client(&base, MlflowAuth::None)
            .resolve(&version_uri())
            .await
            .unwrap();
        assert_eq!(counts.get.load(Ordering::SeqCst), 2);
        assert_eq!(counts.download_uri.load(Ordering::SeqCst), 1);
        assert_eq!(resolved.description, "models:/orientation/2 (run 4b1c)");
        assert_eq!(resolved.version.as_deref(), Some("2"));
        assert_eq!(
            resolved.artifact_uri,
            "mlflow-artifacts:/1/models/m-123/artifacts"
        );
        assert_eq!(resolved.location.path, "1/models/m-123/artifacts");
        assert_eq!(display_url(&resolved.location.server), base);
    }

    #[tokio::test]
    async fn persistent_5xx_gives_up_after_the_retry_budget() {
        let counts = Counts::default();
        let base = serve(flaky_registry(counts.clone(), usize::MAX)).await;
        let err = client(&base, MlflowAuth::None)
            .resolve(&version_uri())
            .await
            .unwrap_err();
        assert_eq!(
            counts.get.load(Ordering::SeqCst),
            FAST.max_attempts as usize
        );
        assert!(err.is_transient());
        assert!(
            err.to_string()
                .contains("answered HTTP 500 to GET /api/2.0/mlflow/model-versions/get"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_401_is_not_retried_and_names_the_user_but_not_the_password() {
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = hits.clone();
        let app = Router::new().route(
            "/api/2.0/mlflow/model-versions/get",
            get(move |headers: HeaderMap| {
                let seen = seen.clone();
                async move {
                    seen.fetch_add(1, Ordering::SeqCst);
                    assert!(headers.contains_key("authorization"));
                    (
                        StatusCode::UNAUTHORIZED,
                        [("www-authenticate", "Basic realm=\"mlflow\"")],
                        "",
                    )
                }
            }),
        );
        let base = serve(app).await;
        let auth = MlflowAuth::Basic {
            username: "alice".into(),
            password: Secret::new("hunter2"),
        };
        let err = client(&base, auth)
            .resolve(&version_uri())
            .await
            .unwrap_err();
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "MLflow at {base} rejected the credentials (basic auth as user 'alice')"
            )),
            "{msg}"
        );
        assert!(!msg.contains("hunter2") && !format!("{err:?}").contains("hunter2"));
    }

    #[tokio::test]
    async fn a_missing_version_names_model_version_and_server() {
        let app = Router::new().route(
            "/api/2.0/mlflow/model-versions/get",
            get(|| async {
                (
                    StatusCode::NOT_FOUND,
                    axum::Json(serde_json::json!({
                        "error_code": "RESOURCE_DOES_NOT_EXIST",
                        "message": "Model Version (name=orientation, version=7) not found"
                    })),
                )
            }),
        );
        let base = serve(app).await;
        let uri = ModelUri::parse("models:/orientation/7").unwrap();
        let err = client(&base, MlflowAuth::None)
            .resolve(&uri)
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "model 'orientation' has no version 7 in the registry at {base}"
            )),
            "{err}"
        );
    }

    #[tokio::test]
    async fn connection_refused_is_reported_after_retries() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = client(&base, MlflowAuth::None)
            .resolve(&version_uri())
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("cannot reach MLflow tracking server at {base}: connection refused")
        );
        assert!(err.is_transient());
    }

    #[tokio::test]
    async fn non_proxied_artifact_uris_are_explained() {
        let app = Router::new()
            .route(
                "/api/2.0/mlflow/model-versions/get",
                get(|| async {
                    axum::Json(serde_json::json!({"model_version": {"version": "1"}}))
                }),
            )
            .route(
                "/api/2.0/mlflow/model-versions/get-download-uri",
                get(|| async {
                    axum::Json(
                        serde_json::json!({"artifact_uri": "s3://bucket/1/models/m-1/artifacts"}),
                    )
                }),
            );
        let base = serve(app).await;
        let uri = ModelUri::parse("models:/orientation/1").unwrap();
        let err = client(&base, MlflowAuth::None)
            .resolve(&uri)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ModelSourceError::ArtifactsNotProxied { .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("s3://bucket/1/models/m-1/artifacts") && msg.contains("--serve-artifacts"),
            "{msg}"
        );
    }

    #[test]
    fn endpoints_keep_the_tracking_path_and_encode_segments() {
        let base = Url::parse("https://dagshub.com/alice/repo.mlflow").unwrap();
        assert_eq!(
            endpoint(&base, &["api", "2.0", "mlflow", "runs", "get"]).as_str(),
            "https://dagshub.com/alice/repo.mlflow/api/2.0/mlflow/runs/get"
        );
        let base = Url::parse("http://m:5000/").unwrap();
        assert_eq!(
            endpoint(&base, &["api", "x y"]).as_str(),
            "http://m:5000/api/x%20y"
        );
    }

    #[test]
    fn artifact_uris_with_a_host_use_that_host() {
        let c = client("https://mlflow.example/prefix", MlflowAuth::None);
        let uri = version_uri();
        let loc = c
            .location("mlflow-artifacts://other:5001/1/abc/artifacts/model", &uri)
            .unwrap();
        assert_eq!(loc.server.as_str(), "https://other:5001/prefix");
        assert_eq!(loc.path, "1/abc/artifacts/model");
        let loc = c.location("mlflow-artifacts:/1/abc", &uri).unwrap();
        assert_eq!(loc.server.as_str(), "https://mlflow.example/prefix");
        assert!(matches!(
            c.location("/var/mlruns/1/abc", &uri),
            Err(ModelSourceError::ArtifactsNotProxied { .. })
        ));
    }
}
