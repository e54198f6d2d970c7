//! Talking to the tracking server: building requests with the configured
//! credentials, turning error statuses into [`ModelSourceError`]s that say
//! what to fix, and retrying what may pass on another try (connection
//! errors, interrupted bodies, 429 and 5xx) with exponential backoff.

use std::time::Duration;

use serde::de::DeserializeOwned;
use url::Url;

use super::wire::MlflowErrorBody;
use super::{
    API_TIMEOUT, CONNECT_TIMEOUT, DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BACKOFF, READ_TIMEOUT, RegistryClient,
};
use crate::model::source::{MlflowAuth, ModelSourceError, display_url};

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

/// The outcome of one try of a request.
pub(super) enum Attempt {
    /// May pass on another try (connection error, 5xx, interrupted body).
    Retry(ModelSourceError),
    /// Will not pass on another try.
    Fail(ModelSourceError),
}

impl RegistryClient {
    pub(super) async fn get_json<T: DeserializeOwned>(
        &self,
        api: &[&str],
        query: &[(&str, &str)],
    ) -> Result<T, ModelSourceError> {
        self.call_json(reqwest::Method::GET, api, query, None).await
    }

    /// Calls `/api/2.0/<api…>` on the tracking server.
    pub(super) async fn call_json<T: DeserializeOwned>(
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

    pub(super) async fn json_request<T: DeserializeOwned>(
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
    pub(super) async fn with_retries<T, F, Fut>(
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

    pub(super) async fn send(
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
    pub(super) async fn check_status(
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

    pub(super) fn unauthorized(&self, status: u16, server: &str) -> ModelSourceError {
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

/// `base` with `segments` appended to its path (percent-encoded).
pub(super) fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// The server part of `url` for messages: the tracking URI when `url` is on
/// it, else `url`'s origin.
pub(super) fn url_base(url: &Url, tracking: &Url) -> Url {
    if url.origin() == tracking.origin() {
        tracking.clone()
    } else {
        let mut origin = url.clone();
        origin.set_path("");
        origin.set_query(None);
        origin
    }
}

pub(super) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(max).collect();
        format!("{cut}…")
    }
}

/// A short cause for a transport error: `connection refused`, `timed out`,
/// or the innermost error's message.
pub(super) fn describe_reqwest(error: &reqwest::Error) -> String {
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
