//! The HTTP application: shared state ([`AppState`]), the route table
//! ([`app`]), the one error type every handler returns ([`ApiError`]), and
//! [`run`], which serves it on a listener until shutdown.
//!
//! Routes (one table, in [`app`]):
//! - Label Studio protocol (`protocol`): `/`, `/health`, `/setup`,
//!   `/predict`, `/webhook`, `/versions`, also under `/backends/{name}/`.
//! - Admin (`admin`): `POST /configure`, `GET /backends`,
//!   `GET|PUT|DELETE /backends/{name}`.
//! - `GET /metrics`: Prometheus text, behind the same basic auth as the
//!   protocol routes when that is configured.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;

use crate::budget::MemoryBudget;
use crate::metrics::Metrics;
use crate::pipeline::Services;
use crate::secret::Secret;
use crate::state::{Backends, StateDir};

/// Default cap on a request body (uploads of hooks and models included).
pub const DEFAULT_MAX_BODY_BYTES: usize = 512 << 20;
/// Default number of `/predict` requests processed at once; more get 503.
pub const DEFAULT_MAX_CONCURRENT_PREDICTS: usize = 64;
/// Default cap on a `/predict` body. Label Studio sends task references,
/// not files, so real bodies are kilobytes; inline `data:` images are the
/// largest legitimate ones.
pub const DEFAULT_MAX_PREDICT_BODY_BYTES: usize = 64 << 20;

/// HTTP basic auth credentials for the protocol routes.
#[derive(Debug, Clone)]
pub struct BasicAuth {
    pub user: String,
    pub password: Secret,
}

/// Server-wide settings that handlers consult.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Guards the Label Studio routes and `/metrics` when set.
    pub basic_auth: Option<BasicAuth>,
    /// Bearer token for admin routes; without it they accept loopback only.
    pub admin_token: Option<Secret>,
    /// Largest admin request body (hook and model uploads).
    pub max_body_bytes: usize,
    /// Largest `/predict` body.
    pub max_predict_body_bytes: usize,
    pub max_concurrent_predicts: usize,
    /// Bytes of memory request work may hold at once; `None`: 40 % of the
    /// machine's or the container's memory.
    pub memory_budget_bytes: Option<u64>,
    /// How long a request waits for memory before it is answered 503.
    pub memory_wait: std::time::Duration,
    /// Reverse proxies whose `X-Forwarded-For` names the client for the
    /// admin loopback check (`--trusted-proxies`); none by default.
    pub trusted_proxies: crate::auth::TrustedProxies,
    /// Lets every backend's task downloads reach private and loopback
    /// addresses (`--allow-private-networks`); `false` by default.
    pub allow_private_networks: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            basic_auth: None,
            admin_token: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_predict_body_bytes: DEFAULT_MAX_PREDICT_BODY_BYTES,
            max_concurrent_predicts: DEFAULT_MAX_CONCURRENT_PREDICTS,
            memory_budget_bytes: None,
            memory_wait: crate::budget::DEFAULT_WAIT,
            trusted_proxies: crate::auth::TrustedProxies::default(),
            allow_private_networks: false,
        }
    }
}

/// Everything handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub backends: Arc<Backends>,
    pub services: Arc<Services>,
    pub config: Arc<ServerConfig>,
    pub state_dir: StateDir,
    pub predict_slots: Arc<tokio::sync::Semaphore>,
    pub metrics: Arc<Metrics>,
    pub loader: Arc<crate::admin::Loader>,
    /// Request work reserves memory here before it allocates.
    pub budget: Arc<MemoryBudget>,
}

/// The whole route table.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(crate::protocol::routes(state.clone()))
        .merge(crate::admin::routes(state.clone()))
        .route(
            "/metrics",
            get(metrics).route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                crate::auth::basic_auth,
            )),
        )
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        // Layers wrap outward: a request without `x-request-id` gets a fresh
        // id first, then the propagate layer echoes it on the response.
        .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
        .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
            tower_http::request_id::MakeRequestUuid,
        ))
        .with_state(state)
}

async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(&state.backends),
    )
        .into_response()
}

/// Serves `app(state)` on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish.
pub async fn run(
    state: AppState,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Every error a handler returns. Bodies are `{"status": <code>, "error":
/// "<message>"}`; messages say what to fix and never carry secrets or
/// internals (those are logged).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 401: credentials missing or wrong.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: not allowed from here.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such backend.
    #[error("{0}")]
    NotFound(String),
    /// 413: body over the size limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: wrong content type.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed but unusable (a hook that does not compile, a
    /// sample that does not predict).
    #[error("{0}")]
    Unprocessable(String),
    /// 502: an upstream (MLflow) failed.
    #[error("{0}")]
    BadGateway(String),
    /// 503: no model configured at this URL.
    #[error("{0}")]
    NotConfigured(String),
    /// 503: too many concurrent predictions; retry.
    #[error("too many concurrent /predict requests; retry shortly")]
    Busy,
    /// 503: the memory budget stayed full; retry.
    #[error("{0}")]
    OutOfMemoryBudget(String),
    /// 500: our bug or our disk.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::NotConfigured(_) | Self::Busy | Self::OutOfMemoryBudget(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::budget::BudgetError> for ApiError {
    fn from(e: crate::budget::BudgetError) -> Self {
        if e.is_transient() {
            Self::OutOfMemoryBudget(e.to_string())
        } else {
            Self::PayloadTooLarge(e.to_string())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry = matches!(self, Self::Busy | Self::OutOfMemoryBudget(_));
        let body = crate::api::ErrorResponse {
            status: status.as_u16(),
            error: self.to_string(),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if retry {
            // Label Studio and well-behaved clients back off and retry.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

/// A JSON body whose rejections use the [`ApiError`] body shape.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// Parses a JSON request body on the blocking pool, with [`JsonBody`]'s
/// errors: a task list of many megabytes takes long enough to parse that
/// doing it on an async worker would stall every other request on it
/// (`/health` included).
pub async fn parse_json_off_thread<T: DeserializeOwned + Send + 'static>(
    headers: &axum::http::HeaderMap,
    body: Result<bytes::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<T, ApiError> {
    let is_json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim();
            mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")
        });
    if !is_json {
        return Err(ApiError::UnsupportedMediaType(
            "expected a JSON body with Content-Type: application/json".into(),
        ));
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(e.body_text())
        } else {
            ApiError::BadRequest(e.body_text())
        }
    })?;
    tokio::task::spawn_blocking(move || serde_json::from_slice::<T>(&body))
        .await
        .map_err(|e| ApiError::Internal(format!("parsing the body: {e}")))?
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ApiError::BadRequest(format!(
                "Failed to deserialize the JSON body into the target type: {e}"
            )),
            _ => ApiError::BadRequest(format!("malformed JSON: {e}")),
        })
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
            "expected a JSON body with Content-Type: application/json".into(),
        ),
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::BadRequest(format!("malformed JSON: {}", e.body_text()))
        }
        JsonRejection::JsonDataError(e) => ApiError::BadRequest(e.body_text()),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge(e.body_text())
        }
        other => ApiError::BadRequest(other.body_text()),
    }
}

/// Everything `serve` needs to build the [`AppState`].
#[derive(Debug, Clone)]
pub struct Settings {
    pub state_dir: std::path::PathBuf,
    pub server: ServerConfig,
    pub model_cache_bytes: u64,
    pub download_cache_bytes: u64,
    /// Overrides every model's execution providers.
    pub execution_provider: Option<String>,
    /// `libonnxruntime` to load instead of discovering one.
    pub ort_library: Option<std::path::PathBuf>,
    /// Cap on ONNX Runtime's memory (all sessions share one capped arena);
    /// `None`: [`crate::model::default_memory_cap`]; `Some(0)`: no cap.
    pub ort_memory_cap: Option<u64>,
    /// Limits on what a model may declare (its inputs' size per task).
    pub model_limits: crate::model::ModelLimits,
}

/// Why the server cannot start. Each message is one line saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Ort(#[from] crate::model::OrtError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("cannot start the hook runtime: {0}")]
    Hooks(#[from] crate::hooks::HookLoadError),
    #[error("cannot set up downloads: {0}")]
    Fetch(String),
    #[error("cannot open the model cache: {0}")]
    Models(String),
}

impl AppState {
    /// Loads ONNX Runtime, opens the state dir, builds the hook runtime and
    /// restores every persisted backend (a broken one is logged and skipped).
    pub async fn start(settings: Settings) -> Result<Self, StartupError> {
        let ort = crate::model::OrtRuntime::init_with(
            settings.ort_library.as_deref(),
            settings
                .ort_memory_cap
                .or_else(crate::model::default_memory_cap),
        )?;
        tracing::info!(library = %ort.library().display(), "ONNX Runtime loaded");
        let state_dir = StateDir::open(&settings.state_dir)?;
        let hooks = Arc::new(crate::hooks::HookRuntime::new(
            crate::hooks::RuntimeOptions {
                artefact_dir: Some(state_dir.compiled_dir()),
                ..crate::hooks::RuntimeOptions::default()
            },
        )?);
        let fetcher = Arc::new(
            crate::fetch::Fetcher::with_options(crate::fetch::FetcherOptions {
                cache_dir: Some(state_dir.downloads_dir()),
                cache_max_bytes: settings.download_cache_bytes,
                allow_private_networks: settings.server.allow_private_networks,
                ..crate::fetch::FetcherOptions::default()
            })
            .map_err(|e| StartupError::Fetch(e.to_string()))?,
        );
        let cache =
            crate::model::ModelCache::new(state_dir.models_dir(), settings.model_cache_bytes)
                .map_err(|e| StartupError::Models(e.to_string()))?;
        let models = Arc::new(
            crate::model::ModelLoader::new(
                Arc::new(ort),
                cache,
                settings.execution_provider.clone(),
            )
            .with_limits(settings.model_limits),
        );
        let loader = Arc::new(crate::admin::Loader::new(hooks.clone(), models));
        let budget = Arc::new(MemoryBudget::new(
            settings
                .server
                .memory_budget_bytes
                .unwrap_or_else(MemoryBudget::default_total),
            settings.server.memory_wait,
        ));
        tracing::info!(
            "memory budget for request work: {} (one request: {}, one backend: {})",
            crate::budget::mib(budget.total()),
            crate::budget::mib(budget.request_share()),
            crate::budget::mib(budget.backend_share()),
        );
        let state = Self {
            backends: Arc::new(Backends::default()),
            services: Arc::new(Services::new(hooks, fetcher, budget.clone())),
            budget,
            predict_slots: Arc::new(tokio::sync::Semaphore::new(
                settings.server.max_concurrent_predicts,
            )),
            config: Arc::new(settings.server),
            state_dir,
            metrics: Arc::new(Metrics::new()),
            loader,
        };
        state.restore().await;
        Ok(state)
    }

    /// Rebuilds the persisted backends, concurrently.
    async fn restore(&self) {
        let started = std::time::Instant::now();
        let persisted = self.state_dir.load_all();
        let builds =
            persisted.into_iter().map(|entry| async move {
                let entry = entry?;
                let backend = self.loader.build(&entry).await.map_err(|e| {
                    crate::state::StateError::Corrupt {
                        name: entry.name.to_string(),
                        message: e.to_string(),
                    }
                })?;
                Ok::<_, crate::state::StateError>(backend)
            });
        for result in futures::future::join_all(builds).await {
            match result {
                Ok(backend) => {
                    tracing::info!(backend = %backend.name, model_version = %backend.model_version, "backend restored");
                    self.backends.swap(Arc::new(backend));
                }
                Err(e) => tracing::error!("skipping persisted backend: {e}"),
            }
        }
        tracing::info!(
            backends = self.backends.list().len(),
            "state restored in {:.0} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
    }
}
