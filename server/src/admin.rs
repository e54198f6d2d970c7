//! The admin API: `POST /configure` (the root backend, which Label Studio
//! reaches at `/`), `PUT /backends/{name}`, `GET /backends`, `GET /backends/{name}`,
//! `DELETE /backends/{name}`. Backends are built by
//! [`crate::backend::Loader`] (which also restores them at start-up) and
//! stored by [`crate::state`].
//!
//! A configure request is validated completely before anything changes:
//! config JSON, hooks compiled, model loaded, the optional sample task
//! predicted and validated. Only then is the backend written to the store
//! (which gives it its next generation) and swapped in, atomically; on any
//! failure the previous version keeps serving.
//!
//! Writes take `If-Match: "<generation>"` (412 when the backend moved on)
//! and `?wait=all` (answer once every live replica serves the new
//! generation; 202 with each replica's state when they do not within
//! `timeout_s`). Responses carry the generation as `ETag` and
//! `X-Backend-Generation`.
//!
//! Admin routes require `Authorization: Bearer $ADMIN_TOKEN` when a token is
//! configured, and accept only loopback clients otherwise; a request relayed
//! by a proxy counts as loopback only when the proxy is trusted
//! (`--trusted-proxies`) and the client it names is (see [`crate::auth`]).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::Json;
use axum::Router;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use crate::api::{
    ActivityDescription, BackendDescription, BackendList, ConfigureResponse, HookDescription,
    HooksDescription, LimitsDescription, ModelDescription, ReplicaDescription, TensorDescription,
};
use crate::app::AppState;
use crate::backend::{Backend, BackendConfig, BackendName, Generation, PersistedBackend};
use crate::error::ApiError;
use crate::pipeline::{self, PredictRequest, Services};
use crate::store::{Precondition, ReplicaStatus, ServingState};
use crate::tensor::TensorSpec;

/// Header naming the generation a response is about.
pub const GENERATION_HEADER: &str = "x-backend-generation";
/// How long `?wait=all` waits by default, and at most.
const DEFAULT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(300);
/// How often `?wait=all` asks the store.
const WAIT_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// The admin routes, behind `admin_auth`.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/configure", post(configure_root))
        .route("/backends", get(list))
        .route(
            "/backends/{name}",
            get(show).put(configure_named).delete(delete),
        )
        // Bearer token when `ADMIN_TOKEN` is set; loopback clients only
        // otherwise, judged by the client behind any trusted proxy.
        .route_layer(middleware::from_fn_with_state(
            state.config.access.clone(),
            crate::auth::admin_auth,
        ))
}

/// The query of a write: `?wait=all&timeout_s=30`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteQuery {
    wait: Option<String>,
    timeout_s: Option<f64>,
}

/// What a write asked for besides the write itself.
struct WriteOptions {
    expect: Precondition,
    /// Wait this long for every live replica, if asked to.
    wait_all: Option<std::time::Duration>,
}

impl WriteOptions {
    fn from_request(
        headers: &HeaderMap,
        query: Result<WriteQuery, ApiError>,
    ) -> Result<Self, ApiError> {
        let query = query?;
        let expect = match headers.get(header::IF_MATCH) {
            None => Precondition::Any,
            Some(value) => {
                let text = value.to_str().map_err(|_| {
                    ApiError::BadRequest("If-Match is not text (expected \"<generation>\")".into())
                })?;
                let generation: Generation =
                    text.parse()
                        .map_err(|e: crate::backend::InvalidGeneration| {
                            ApiError::BadRequest(e.to_string())
                        })?;
                Precondition::Matches(generation)
            }
        };
        let wait_all = match query.wait.as_deref() {
            None => None,
            Some("all") => Some(wait_timeout(query.timeout_s)?),
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "wait={other:?} is not supported (use wait=all, optionally with timeout_s)"
                )));
            }
        };
        if query.timeout_s.is_some() && wait_all.is_none() {
            return Err(ApiError::BadRequest(
                "timeout_s applies to wait=all; add wait=all".into(),
            ));
        }
        Ok(Self { expect, wait_all })
    }
}

fn wait_timeout(seconds: Option<f64>) -> Result<std::time::Duration, ApiError> {
    let Some(seconds) = seconds else {
        return Ok(DEFAULT_WAIT);
    };
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= MAX_WAIT.as_secs_f64()) {
        return Err(ApiError::BadRequest(format!(
            "timeout_s must be between 0 and {} seconds, not {seconds}",
            MAX_WAIT.as_secs()
        )));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

fn write_query(
    query: Result<Query<WriteQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<WriteQuery, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::BadRequest(format!("query: {}", e.body_text())))
}

async fn configure_root(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<WriteQuery>, axum::extract::rejection::QueryRejection>,
    multipart: Multipart,
) -> Result<Response, ApiError> {
    let options = WriteOptions::from_request(&headers, write_query(query));
    configure(&state, BackendName::root(), options, multipart).await
}

async fn configure_named(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    query: Result<Query<WriteQuery>, axum::extract::rejection::QueryRejection>,
    multipart: Multipart,
) -> Result<Response, ApiError> {
    let name = BackendName::new(&name).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let options = WriteOptions::from_request(&headers, write_query(query));
    configure(&state, name, options, multipart).await
}

async fn configure(
    state: &AppState,
    name: BackendName,
    options: Result<WriteOptions, ApiError>,
    multipart: Multipart,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    // The upload is read before the options are judged, so a client that
    // is still sending reads the error instead of a reset.
    let upload = read_upload(multipart).await?;
    let options = options?;
    let mut persisted = PersistedBackend {
        name: name.clone(),
        config: upload.config,
        pre_hook: upload.pre_hook.map(|b| b.to_vec()),
        post_hook: upload.post_hook.to_vec(),
        model_upload: upload.model.map(|(n, b)| (n, b.to_vec())),
    };
    // One change per backend at a time in this process, so the store and
    // memory agree; the store orders changes between replicas.
    let lock = state.loader.lock_for(&name);
    let guard = lock.lock().await;
    let backend = Arc::new(state.loader.build(&persisted).await?);
    check_vocabulary(&backend).await?;
    if let Some(sample) = upload.sample {
        check_sample(&state.services, &backend, sample).await?;
    }
    // An alias is resolved once, here: every replica builds the version
    // this one validated, even if the alias moves during the rollout.
    persisted.config.model = backend.config.model.clone();
    let generation = state.store.save(&persisted, options.expect).await?;
    backend.stamp(generation);
    let replaced = state.backends.swap(backend.clone()).is_some();
    drop(guard);
    state.follower.report().await;
    tracing::info!(
        backend = %name, %generation, model_version = %backend.model_version, replaced,
        "backend configured in {:.0} ms", started.elapsed().as_secs_f64() * 1e3
    );
    let mut description = describe(&backend, state.follower.replica());
    let converged = match options.wait_all {
        Some(timeout) => {
            let (converged, replicas) =
                wait_for_replicas(state, &name, Some(generation), timeout).await;
            description.replicas = replicas;
            converged
        }
        None => true,
    };
    let body = ConfigureResponse {
        backend: description,
        configure_ms: Some(started.elapsed().as_secs_f64() * 1e3),
    };
    let status = match (converged, replaced) {
        (false, _) => StatusCode::ACCEPTED,
        (true, true) => StatusCode::OK,
        (true, false) => StatusCode::CREATED,
    };
    Ok(with_generation(
        (status, Json(body)).into_response(),
        generation,
    ))
}

/// Adds `ETag` and `X-Backend-Generation` for `generation`.
pub fn with_generation(mut response: Response, generation: Generation) -> Response {
    let headers = response.headers_mut();
    if let Ok(tag) = HeaderValue::from_str(&format!("\"{generation}\"")) {
        headers.insert(header::ETAG, tag);
    }
    headers.insert(GENERATION_HEADER, HeaderValue::from(generation.get()));
    response
}

/// Waits until every live replica serves `generation` of `name` (or, for
/// `None`, serves no `name` at all), a replica failed to build it, or
/// `timeout` passed. Returns whether all got there, and each one's state.
async fn wait_for_replicas(
    state: &AppState,
    name: &BackendName,
    generation: Option<Generation>,
    timeout: std::time::Duration,
) -> (bool, Vec<ReplicaDescription>) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let replicas = match state.store.replicas().await {
            Ok(replicas) => replicas,
            Err(e) => {
                tracing::warn!("wait=all: cannot read replica states: {e}");
                Vec::new()
            }
        };
        let live: Vec<&ReplicaStatus> = replicas.iter().filter(|r| r.is_live()).collect();
        let done = !live.is_empty() && live.iter().all(|r| serves(r, name, generation));
        let failed = live.iter().any(|r| {
            r.report_on(name).is_some_and(|report| {
                report.state == ServingState::Failed
                    && generation.is_some_and(|g| report.generation >= g)
            })
        });
        if done || failed || tokio::time::Instant::now() >= deadline {
            let described = live.iter().map(|r| describe_replica(r, name)).collect();
            return (done, described);
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

/// Whether `replica` serves `generation` of `name` (`None`: nothing).
fn serves(replica: &ReplicaStatus, name: &BackendName, generation: Option<Generation>) -> bool {
    let report = replica.report_on(name);
    match generation {
        Some(g) => report.is_some_and(|r| r.state == ServingState::Serving && r.generation >= g),
        None => report.is_none_or(|r| r.state != ServingState::Serving),
    }
}

fn describe_replica(replica: &ReplicaStatus, name: &BackendName) -> ReplicaDescription {
    let report = replica.report_on(name);
    ReplicaDescription {
        replica: replica.replica.clone(),
        generation: report.map_or(0, |r| r.generation.get()),
        state: report.map_or("missing", |r| r.state.as_str()).to_owned(),
        error: report.and_then(|r| r.error.clone()),
        heartbeat_age_s: replica.heartbeat_age_s,
    }
}

/// The parts of a configure request.
struct Upload {
    config: BackendConfig,
    pre_hook: Option<Bytes>,
    post_hook: Bytes,
    model: Option<(String, Bytes)>,
    sample: Option<Bytes>,
}

async fn read_upload(mut multipart: Multipart) -> Result<Upload, ApiError> {
    // Read every part before judging any, so an error is answered after the
    // client finished sending (otherwise it sees a reset, not our message).
    let mut parts: Vec<(String, Option<String>, Bytes)> = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_owned();
        let file_name = field.file_name().map(str::to_owned);
        let bytes = field.bytes().await.map_err(multipart_error)?;
        parts.push((name, file_name, bytes));
    }
    let mut config = None;
    let mut pre_hook = None;
    let mut post_hook = None;
    let mut model = None;
    let mut sample = None;
    for (name, file_name, bytes) in parts {
        match name.as_str() {
            "config" => config = Some(parse_config(&bytes)?),
            "pre_hook" => pre_hook = Some(bytes),
            "post_hook" => post_hook = Some(bytes),
            "model" => model = Some((file_name.unwrap_or_else(|| "model.onnx".into()), bytes)),
            "sample" => sample = Some(bytes),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown multipart part '{other}' (expected config, pre_hook, post_hook, model, sample)"
                )));
            }
        }
    }
    let config = config.unwrap_or_else(BackendConfig::empty);
    let post_hook = post_hook.ok_or_else(|| {
        ApiError::BadRequest(
            "missing the post_hook part (a .wasm component exporting the post-hook world)".into(),
        )
    })?;
    match (&config.model.uri, &model) {
        (None, None) => {
            return Err(ApiError::BadRequest(
                "no model: set config.model.uri (e.g. models:/name/1) or upload a model part"
                    .into(),
            ));
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "both config.model.uri and a model part were given; use one".into(),
            ));
        }
        _ => {}
    }
    Ok(Upload {
        config,
        pre_hook,
        post_hook,
        model,
        sample,
    })
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(e.body_text())
    } else {
        ApiError::BadRequest(format!("malformed multipart body: {}", e.body_text()))
    }
}

fn parse_config(bytes: &[u8]) -> Result<BackendConfig, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("config: {e}")))
}

/// Refuses a model whose tokenizer can produce ids its embedding does not
/// have (a `tokenizer.json` from another model): the largest id goes
/// through the model once.
async fn check_vocabulary(backend: &Backend) -> Result<(), ApiError> {
    let Some((vocabulary, inputs)) =
        pipeline::builtin_pre::vocabulary_probe(backend.model.inputs(), &backend.tokenizer)
    else {
        return Ok(());
    };
    match backend.model.run(inputs).await {
        Ok(_) => Ok(()),
        Err(e) => Err(ApiError::Unprocessable(format!(
            "the model's tokenizer.json has {vocabulary} tokens, but the model fails on token id \
             {} (ONNX Runtime: {e}): the tokenizer does not belong to this model; log the \
             tokenizer it was trained with",
            vocabulary - 1
        ))),
    }
}

/// Runs the sample task(s) through the new backend; any failure refuses
/// the configuration.
async fn check_sample(
    services: &Services,
    backend: &Arc<Backend>,
    sample: Bytes,
) -> Result<(), ApiError> {
    let value: Value = serde_json::from_slice(&sample)
        .map_err(|e| ApiError::BadRequest(format!("sample is not JSON: {e}")))?;
    let tasks = match value {
        Value::Array(tasks) => tasks,
        task @ Value::Object(_) => vec![task],
        _ => {
            return Err(ApiError::BadRequest(
                "sample must be a task object or a list of tasks".into(),
            ));
        }
    };
    let request = PredictRequest {
        tasks,
        ..PredictRequest::default()
    };
    let (results, _) = pipeline::predict(services, backend, request).await?;
    for (i, result) in results.into_iter().enumerate() {
        if let Err(e) = result {
            return Err(ApiError::Unprocessable(format!(
                "sample task {i} failed at {}: {}",
                e.stage.as_str(),
                e.message
            )));
        }
    }
    Ok(())
}

async fn list(State(state): State<AppState>) -> Json<BackendList> {
    Json(BackendList {
        backends: state
            .backends
            .list()
            .iter()
            .map(|b| describe(b, state.follower.replica()))
            .collect(),
    })
}

async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let name = BackendName::new(&name).map_err(|e| ApiError::NotFound(e.to_string()))?;
    let backend = state
        .backends
        .get(&name)
        .ok_or_else(|| ApiError::NotFound(format!("no backend named '{name}'")))?;
    let mut description = describe(&backend, state.follower.replica());
    // The replicas' view is extra: without the store, the backend is
    // still shown.
    if let Ok(replicas) = state.store.replicas().await {
        description.replicas = replicas
            .iter()
            .filter(|r| r.is_live())
            .map(|r| describe_replica(r, &name))
            .collect();
    }
    Ok(with_generation(
        Json(description).into_response(),
        backend.generation(),
    ))
}

async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    query: Result<Query<WriteQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let name = BackendName::new(&name).map_err(|e| ApiError::NotFound(e.to_string()))?;
    let options = WriteOptions::from_request(&headers, write_query(query))?;
    let lock = state.loader.lock_for(&name);
    let guard = lock.lock().await;
    if !state.store.delete(&name, options.expect).await? {
        return Err(ApiError::NotFound(format!("no backend named '{name}'")));
    }
    state.backends.remove(&name);
    drop(guard);
    state.follower.report().await;
    tracing::info!(backend = %name, "backend deleted");
    if let Some(timeout) = options.wait_all {
        let (converged, replicas) = wait_for_replicas(&state, &name, None, timeout).await;
        if !converged {
            return Ok((StatusCode::ACCEPTED, Json(replicas)).into_response());
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A backend as the admin API shows it on `replica`; secrets come out as
/// `***`.
pub fn describe(backend: &Backend, replica: &str) -> BackendDescription {
    BackendDescription {
        name: backend.name.to_string(),
        url: backend.name.url_path(),
        model_version: backend.model_version.clone(),
        model: ModelDescription {
            source: backend.model_description.clone(),
            inputs: tensors(backend.model.inputs()),
            outputs: tensors(backend.model.outputs()),
            providers: backend.model.providers().to_vec(),
            batches: backend.model.batches_on_dim0(),
        },
        hooks: HooksDescription {
            pre_hook: backend.pre_hook.as_deref().map(HookDescription::from),
            post_hook: HookDescription::from(&*backend.post_hook),
        },
        limits: LimitsDescription::from(&backend.limits),
        config: backend.config.clone(),
        created: rfc3339(backend.created),
        activity: ActivityDescription::from(&backend.activity),
        generation: backend.generation().get(),
        replica: replica.to_owned(),
        replicas: Vec::new(),
    }
}

fn tensors(specs: &[TensorSpec]) -> Vec<TensorDescription> {
    specs.iter().map(TensorDescription::from).collect()
}

/// A time as RFC 3339 (`2026-01-02T03:04:05.123Z`); empty if out of range.
fn rfc3339(time: SystemTime) -> String {
    time::OffsetDateTime::from(time)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
