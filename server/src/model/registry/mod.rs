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
//!
//! This file owns the client and the types it hands out; the work is split
//! along its seams:
//! - [`client`]: HTTP requests, status handling and the retry loop;
//! - [`resolve`]: from a model URI to the proxied folder ([`ResolvedModel`]);
//! - [`download`]: listing that folder and downloading its files;
//! - [`wire`]: the JSON shapes MLflow answers with.

mod client;
mod download;
mod resolve;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::source::MlflowConfig;

pub use client::{RetryPolicy, http_client};

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

    /// The tracking server, for messages.
    fn server(&self) -> String {
        self.config.display_uri()
    }
}

#[cfg(test)]
mod tests;
