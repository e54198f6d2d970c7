//! The Label Studio ML backend protocol (Label Studio 1.23.x): `/health`,
//! `/setup`, `/predict`, `/webhook`, `/versions`, served for the root
//! backend at `/` and for each named backend under `/backends/{name}`.
//!
//! Bodies follow what Label Studio sends and expects: one `results` entry per task in task
//! order, every prediction stamped with the model version `/setup`
//! reported, and a failed task reported as an entry without `result` so
//! Label Studio keeps the others. Optional HTTP basic auth
//! (`BASIC_AUTH_USER`/`BASIC_AUTH_PASS`, [`crate::auth::basic_auth`]) guards
//! every route except `/webhook`, which Label Studio calls without
//! credentials and which does nothing here (no training). Without it these
//! routes are open to anyone who can reach the server (a warning is logged
//! at start-up when it listens on a non-loopback address).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Extension;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;
use tower_http::request_id::RequestId;

use crate::api::{
    Health, PredictResponse, STATUS_UP, SetupResponse, TaskFailure, TaskOutcome, VersionsResponse,
    WebhookResponse,
};
use crate::app::AppState;
use crate::backend::{Backend, BackendName};
use crate::error::{ApiError, JsonBody, parse_json_off_thread};
use crate::pipeline::{self, PredictRequest};

/// What `/health` calls this backend (Label Studio shows it).
pub const MODEL_CLASS: &str = "configurable-ls-backend";

/// The protocol routes, for the root backend at `/` and for each named
/// backend under `/backends/{name}` (same handlers; the path says which).
pub fn routes(state: AppState) -> Router<AppState> {
    // The body limit and reservation wrap only the predict routes; admin
    // uploads have their own, larger limit.
    let predict_routes = Router::new()
        .route("/predict", post(predict))
        .route("/backends/{name}/predict", post(predict))
        .route_layer(middleware::from_fn_with_state(state.clone(), reserve_body))
        .route_layer(DefaultBodyLimit::max(predict_body_limit(&state)));
    let guarded = Router::new()
        .route("/", get(health))
        .route("/health", get(health))
        .route("/backends/{name}/health", get(health))
        .route("/setup", post(setup))
        .route("/backends/{name}/setup", post(setup))
        .merge(predict_routes)
        .route("/versions", get(versions))
        .route("/backends/{name}/versions", get(versions))
        .route_layer(middleware::from_fn_with_state(
            state.config.access.clone(),
            crate::auth::basic_auth,
        ));
    guarded
        .route("/webhook", post(webhook))
        .route("/backends/{name}/webhook", post(webhook))
}

/// Which backend a protocol route addresses: `/backends/{name}/…` or the root.
fn target(path: Option<Path<String>>) -> Result<BackendName, ApiError> {
    match path {
        None => Ok(BackendName::root()),
        Some(Path(name)) => BackendName::new(&name).map_err(|e| ApiError::NotFound(e.to_string())),
    }
}

/// Always `UP` once the server serves requests (persisted backends are
/// restored before the listener opens); `configured` says whether a model
/// is behind this URL. Unknown named backends are a 404.
async fn health(
    State(state): State<AppState>,
    path: Option<Path<String>>,
) -> Result<Json<Health>, ApiError> {
    let name = target(path)?;
    let backend = state.backends.get(&name);
    if backend.is_none() && name.as_str() != crate::backend::ROOT_BACKEND {
        return Err(unknown_backend(&name));
    }
    Ok(Json(Health {
        status: STATUS_UP.to_owned(),
        model_class: MODEL_CLASS.to_owned(),
        backend: name.to_string(),
        configured: backend.is_some(),
        model_version: backend.as_ref().map(|b| b.model_version.clone()),
    }))
}

/// `/setup` body; only `hostname` is used (for relative file URLs when no
/// Label Studio URL is configured). The `access_token` LS sends is ignored:
/// it is the project creator's legacy token even when legacy tokens are off.
///
/// Anyone who can reach `/setup` can send a `hostname`, so it is remembered
/// as an untrusted fallback: the fetcher never sends the API key there
/// (unless the host is in `fetch.allowed_hosts`) and guards it like any
/// task URL (see [`crate::fetch`]).
#[derive(Debug, Default, Deserialize)]
struct SetupBody {
    #[serde(default)]
    hostname: Option<String>,
}

async fn setup(
    State(state): State<AppState>,
    path: Option<Path<String>>,
    JsonBody(body): JsonBody<SetupBody>,
) -> Result<Json<SetupResponse>, ApiError> {
    let backend = configured(&state, &target(path)?)?;
    if let Some(hostname) = body.hostname.filter(|h| !h.is_empty()) {
        backend.activity.remember_label_studio_url(hostname);
    }
    Ok(Json(SetupResponse {
        model_version: backend.model_version.clone(),
    }))
}

/// `/predict` body as Label Studio sends it.
#[derive(Debug, Deserialize)]
struct PredictBody {
    tasks: Vec<Value>,
    #[serde(default)]
    label_config: Option<String>,
    #[serde(default)]
    params: Option<PredictParams>,
}

#[derive(Debug, Default, Deserialize)]
struct PredictParams {
    #[serde(default)]
    context: Option<Value>,
}

async fn predict(
    State(state): State<AppState>,
    path: Option<Path<String>>,
    request_id: Option<Extension<RequestId>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let name = target(path)?;
    let backend = configured(&state, &name)?;
    let body: PredictBody = parse_json_off_thread(&headers, body).await?;
    if body.tasks.is_empty() {
        return Err(ApiError::BadRequest("\"tasks\" is empty".into()));
    }
    let Ok(_permit) = state.predict_slots.clone().try_acquire_owned() else {
        state.metrics.rejected();
        return Err(ApiError::Busy);
    };
    let request_id = log_request_id(request_id);
    let started = Instant::now();
    let task_count = body.tasks.len();
    let request = PredictRequest {
        tasks: body.tasks,
        label_config: body.label_config,
        interactive_context: body.params.and_then(|p| p.context).filter(|c| !c.is_null()),
        label_studio_url: backend.activity.label_studio_url(),
    };
    let (results, times) = pipeline::predict(&state.services, &backend, request).await?;
    let entries: Vec<TaskOutcome> = results
        .into_iter()
        .map(|r| result_entry(&backend, r))
        .collect();
    let failed = entries
        .iter()
        .filter(|e| matches!(e, TaskOutcome::Failed(_)))
        .count();
    backend.activity.requests.fetch_add(1, Ordering::Relaxed);
    backend
        .activity
        .tasks
        .fetch_add(task_count as u64, Ordering::Relaxed);
    state
        .metrics
        .observe_predict(&name, task_count, failed, &times, started.elapsed());
    tracing::info!(
        request_id, backend = %name, tasks = task_count, failed,
        fetch_ms = ms(times.fetch), pre_ms = ms(times.pre_hook), inference_ms = ms(times.inference),
        post_ms = ms(times.post_hook), validation_ms = ms(times.validation),
        total_ms = ms(started.elapsed()),
        "predict"
    );
    // The generation this whole request was served by.
    Ok(crate::admin::with_generation(
        Json(PredictResponse { results: entries }).into_response(),
        backend.generation(),
    ))
}

/// The request id for the predict log line: the one `app`'s request-id
/// layers took from `x-request-id` or generated (and echo on the response).
/// Bytes that are not UTF-8 are replaced rather than dropping the id.
fn log_request_id(id: Option<Extension<RequestId>>) -> String {
    id.map(|Extension(id)| String::from_utf8_lossy(id.header_value().as_bytes()).into_owned())
        .unwrap_or_default()
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

/// One `results` entry: the prediction (or list of them), or an error entry
/// without `result`, which Label Studio skips while storing the others.
fn result_entry(backend: &Backend, result: pipeline::TaskResult) -> TaskOutcome {
    match result {
        Ok(mut predictions) if predictions.len() == 1 => {
            TaskOutcome::Predicted(predictions.remove(0))
        }
        Ok(predictions) => TaskOutcome::Predicted(Value::Array(predictions)),
        Err(e) => {
            backend.activity.record_error(&e.message);
            tracing::warn!(backend = %backend.name, stage = e.stage.as_str(), "task failed: {}", e.message);
            TaskOutcome::Failed(TaskFailure {
                error: e.message,
                stage: e.stage.as_str().to_owned(),
                model_version: backend.model_version.clone(),
            })
        }
    }
}

/// The largest `/predict` body: its own limit, within the server-wide one.
fn predict_body_limit(state: &AppState) -> usize {
    state
        .config
        .max_predict_body_bytes
        .min(state.config.max_body_bytes)
}

/// How many bytes of memory a JSON body takes once parsed, per byte of the
/// body, at most (measured: task lists parse into about 4.7 bytes of
/// `serde_json::Value` per byte), plus the body's own bytes.
const BODY_EXPANSION: u64 = 6;

/// The budget key that request bodies are counted under, beside backends.
const BODIES: &str = "(request bodies)";

/// Reserves memory for a `/predict` body before a byte of it is read: its
/// declared length times [`BODY_EXPANSION`] (a body without a length counts
/// as the largest allowed). Over the limit: 413; no room in the budget for
/// the whole wait: 503 with `Retry-After`.
async fn reserve_body(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limit = predict_body_limit(&state) as u64;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared.filter(|&n| n > limit) {
        let refusal = ApiError::PayloadTooLarge(format!(
            "the /predict body is {} but at most {} is accepted (CLS_MAX_PREDICT_BODY_MB)",
            crate::size::human(length),
            crate::size::human(limit)
        ));
        return refusal.answer_after_draining(request, DRAIN_BYTES).await;
    }
    // A body of unknown length is counted as the largest a request may
    // hold; a declared one as what it will take, so one that can never fit
    // is refused (413) instead of waiting.
    let need = match declared {
        Some(length) => length.saturating_mul(BODY_EXPANSION),
        None => limit
            .saturating_mul(BODY_EXPANSION)
            .min(state.budget.request_share()),
    };
    match state
        .budget
        .reserve(BODIES, need, "the /predict body")
        .await
    {
        Ok(_held) => next.run(request).await,
        Err(e) => {
            state.metrics.rejected();
            ApiError::from(e)
                .answer_after_draining(request, DRAIN_BYTES)
                .await
        }
    }
}

/// Most of a refused body read (and dropped) before answering.
const DRAIN_BYTES: usize = 64 << 20;

/// Label Studio calls this for every project event; we do not train, so
/// we answer at once (it waits up to 1 s inside the user's request).
async fn webhook() -> (StatusCode, Json<WebhookResponse>) {
    let body = WebhookResponse {
        status: "ok".to_owned(),
    };
    (StatusCode::OK, Json(body))
}

async fn versions(
    State(state): State<AppState>,
    path: Option<Path<String>>,
) -> Result<Json<VersionsResponse>, ApiError> {
    let backend = configured(&state, &target(path)?)?;
    Ok(Json(VersionsResponse {
        versions: vec![backend.model_version.clone()],
    }))
}

fn configured(state: &AppState, name: &BackendName) -> Result<Arc<Backend>, ApiError> {
    state
        .backends
        .get(name)
        .ok_or_else(|| unknown_backend(name))
}

fn unknown_backend(name: &BackendName) -> ApiError {
    if name.as_str() == crate::backend::ROOT_BACKEND {
        ApiError::NotConfigured(
            "no model is configured at this URL yet: POST /configure first (see the README)".into(),
        )
    } else {
        ApiError::NotFound(format!(
            "no backend named '{name}': create it with PUT /backends/{name}"
        ))
    }
}
