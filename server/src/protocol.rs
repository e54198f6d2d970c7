//! The Label Studio ML backend protocol (Label Studio 1.23.x): `/health`,
//! `/setup`, `/predict`, `/webhook`, `/versions`, served for the root
//! backend at `/` and for each named backend under `/backends/{name}`.
//!
//! Bodies follow what Label Studio sends and expects (see
//! `shared/reference/ls-protocol.md`): one `results` entry per task in task
//! order, every prediction stamped with the model version `/setup`
//! reported, and a failed task reported as an entry without `result` so
//! Label Studio keeps the others. Optional HTTP basic auth
//! (`BASIC_AUTH_USER`/`BASIC_AUTH_PASS`) guards every route except
//! `/webhook`, which Label Studio calls without credentials and which does
//! nothing here (no training).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use crate::api::{
    Health, PredictResponse, STATUS_UP, SetupResponse, TaskFailure, TaskOutcome, VersionsResponse,
    WebhookResponse,
};
use crate::app::{ApiError, AppState, JsonBody};
use crate::pipeline::{self, PredictRequest};
use crate::state::{Backend, BackendName};

/// What `/health` calls this backend (Label Studio shows it).
pub const MODEL_CLASS: &str = "configurable-ls-backend";

/// The protocol routes, for the root backend at `/` and for each named
/// backend under `/backends/{name}` (same handlers; the path says which).
pub fn routes(state: AppState) -> Router<AppState> {
    let guarded = Router::new()
        .route("/", get(health))
        .route("/health", get(health))
        .route("/backends/{name}/health", get(health))
        .route("/setup", post(setup))
        .route("/backends/{name}/setup", post(setup))
        .route("/predict", post(predict))
        .route("/backends/{name}/predict", post(predict))
        .route("/versions", get(versions))
        .route("/backends/{name}/versions", get(versions))
        .route_layer(middleware::from_fn_with_state(state, basic_auth));
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
    if backend.is_none() && name.as_str() != crate::state::ROOT_BACKEND {
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
    headers: HeaderMap,
    JsonBody(body): JsonBody<PredictBody>,
) -> Result<Response, ApiError> {
    let name = target(path)?;
    let backend = configured(&state, &name)?;
    if body.tasks.is_empty() {
        return Err(ApiError::BadRequest("\"tasks\" is empty".into()));
    }
    let Ok(_permit) = state.predict_slots.clone().try_acquire_owned() else {
        state.metrics.rejected();
        return Ok(busy());
    };
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let started = Instant::now();
    let task_count = body.tasks.len();
    let request = PredictRequest {
        tasks: body.tasks,
        label_config: body.label_config,
        interactive_context: body.params.and_then(|p| p.context).filter(|c| !c.is_null()),
        label_studio_url: backend.activity.label_studio_url(),
    };
    let (results, times) = pipeline::predict(&state.services, &backend, request).await;
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
    Ok(Json(PredictResponse { results: entries }).into_response())
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

fn busy() -> Response {
    let mut response = ApiError::Busy.into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

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
    if name.as_str() == crate::state::ROOT_BACKEND {
        ApiError::NotConfigured(
            "no model is configured at this URL yet: POST /configure first (see the README)".into(),
        )
    } else {
        ApiError::NotFound(format!(
            "no backend named '{name}': create it with PUT /backends/{name}"
        ))
    }
}

/// HTTP basic auth for the protocol routes, when configured.
async fn basic_auth(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(expected) = &state.config.basic_auth else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        });
    let ok = given.is_some_and(|g| {
        let want = format!("{}:{}", expected.user, expected.password.expose());
        constant_time_eq(&g, want.as_bytes())
    });
    if ok {
        next.run(request).await
    } else {
        let mut response = ApiError::Unauthorized("basic auth credentials missing or wrong".into())
            .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Login required\""),
        );
        response
    }
}

/// Compares secrets without an early exit on the first differing byte.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
